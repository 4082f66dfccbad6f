import { tf, type Tensor } from '../../engine/tf.js';
import { isUnbatched } from './matmul.js';
import { tidyGrad } from './tidy_grad.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';
import { dropoutMask } from './dropout_mask.js';
import type { HeadLayout } from '../../engine/native_decode.js';

/** A mask value that stays finite under addition (a fully masked row softmaxes to uniform, never NaN). */
export const MASKED = -1e9;

/**
 * Below this many query rows (decoding), the products are broadcast multiply-and-sum: a decode step's q·kᵀ and P·v
 * are a few hundred thousand multiply-adds, which elementwise kernels do in about a millisecond, while per-head 2-D
 * products pay a call each and tfjs's batched kernel runs at ~0.1 GFLOP/s on these shapes.
 */
const MIN_ROWS_FOR_HEAD_LOOP = 16;

type Form = 'nn' | 'nt' | 'tn';

/** q [B, H, M, hs] · k [B, H, S, hs]ᵀ → [B, H, M, S], as a broadcast product summed over hs. */
function broadcastScores(q: Tensor, k: Tensor): Tensor {
  return tf.sum(tf.mul(tf.expandDims(q, 3), tf.expandDims(k, 2)), -1);
}

/** P [B, H, M, S] · v [B, H, S, hs] → [B, H, M, hs], as a broadcast product summed over S. */
function broadcastMix(p: Tensor, v: Tensor): Tensor {
  const vT = tf.expandDims(tf.transpose(v, [0, 1, 3, 2]), 2); // (B, H, 1, hs, S)
  return tf.sum(tf.mul(tf.expandDims(p, 3), vT), -1);
}

function swapLast2(x: Tensor): Tensor {
  return tf.transpose(x, [0, 1, 3, 2]);
}

/**
 * Per-head products of a [B, G, ·, ·] and b [B, G, ·, ·] in form nn (a·b), nt (a·bᵀ) or tn (aᵀ·b). `loop`: a loop of
 * untransposed 2-D products (the fast form on XNNPACK) over unstacked heads; otherwise one batched kernel.
 */
function headProducts(a: Tensor, b: Tensor, form: Form, loop: boolean): Tensor {
  if (!loop) return tf.matMul(a, b, form === 'tn', form === 'nt');
  const [B, G] = a.shape as [number, number];
  const at = form === 'tn' ? swapLast2(a) : a;
  const bt = form === 'nt' ? swapLast2(b) : b;
  const M = at.shape[2]!;
  const N = bt.shape[3]!;
  const as = tf.unstack(tf.reshape(at, [B * G, M, at.shape[3]!]));
  const bs = tf.unstack(tf.reshape(bt, [B * G, bt.shape[2]!, N]));
  const outs = as.map((x, i) => tf.matMul(x, bs[i]!));
  tf.dispose([...as, ...bs]);
  const out = tf.stack(outs);
  tf.dispose(outs);
  return tf.reshape(out, [B, G, M, N]);
}

/** Attention-probability dropout: its rate, and the seed of its mask (one per call). */
export interface AttentionDropout {
  rate: number;
  seed: number;
}

/**
 * The inverted dropout mask over attention probabilities: 0 where dropped, 1/(1 − rate) where kept. tf.dropout on
 * ones, so a seed gives the same mask on every backend that runs tfjs's seeded random kernel.
 */
export function attentionDropoutMask(probs: Tensor, d: AttentionDropout): Tensor {
  return dropoutMask(probs.shape, d.rate, d.seed);
}

/**
 * Scaled dot-product attention over heads, with an additive bias carrying the causal/padding mask (and ALiBi).
 * Shapes: q [B, H, T, hs], k and v [B, Hkv, S, hs] (grouped heads shared as HF's repeat_kv does), bias broadcastable
 * to [B, H, T, S]. Returns [B, H, T, hs].
 *
 * Grouped heads are never repeated: query heads h = g·rep … g·rep + rep − 1 share kv head g, so q viewed as
 * [B, Hkv, rep·T, hs] makes every product one kv head against rep·T query rows (and the sum over a group in the
 * k/v gradients falls out of the product itself).
 *
 * One custom-gradient op: it saves q, k, v and the probabilities only (tfjs's own graph kept every score tensor
 * its ops touched until the backward pass ended) and frees them as soon as its gradient is computed:
 *   P = softmax(q·kᵀ·scale + bias), out = P·v
 *   dP = dout·vᵀ, dv = Pᵀ·dout, dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale, dq = dS·k, dk = dSᵀ·q
 *
 * `softcap` c (Gemma 2's attn_logit_softcapping) bounds the scaled scores before the bias: s ↦ c·tanh(s/c), so
 * P = softmax(c·tanh(q·kᵀ·scale/c) + bias) and dS gains the factor 1 − tanh²; tanh is then saved as well.
 *
 * `dropout` (training only: HF's attn_dropout / nanoGPT's attn_dropout) drops attention probabilities with an
 * inverted mask M (kept entries scaled by 1/(1 − rate)), seeded: out = (P ⊙ M)·v. The softmax gradient still uses
 * the undropped P: dv = (P ⊙ M)ᵀ·dout, dP = (dout·vᵀ) ⊙ M, then dS as above; M is saved with P.
 */
export function attention(
  q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number, softcap: number | null = null,
  dropout: AttentionDropout | null = null,
): Tensor {
  const [B, H, T, hs] = q.shape as [number, number, number, number];
  const [, G, S] = k.shape as [number, number, number];
  const rows = (H / G) * T; // query rows per kv head
  const grouped = (t: Tensor) => tf.reshape(t, [B, G, rows, t.shape[3]!]); // (B, H, T, ·) → (B, G, rep·T, ·)
  const perHead = (t: Tensor) => tf.reshape(t, [B, H, T, t.shape[3]!]);
  const unbatched = isUnbatched();
  const loop = unbatched && rows >= MIN_ROWS_FOR_HEAD_LOOP;
  const broadcast = unbatched && !loop;
  const drop = dropout && dropout.rate > 0 ? dropout : null;
  if (drop && !(drop.rate < 1)) throw new Error(`attention dropout rate must be in [0, 1), got ${drop.rate}`);
  // The scaled, masked softmax and its gradient as one kernel each where the backend has them.
  const fusedSoftmax = q.dtype === 'float32' && bias.dtype === 'float32' && bias.rank <= 4 && fusedKernel(FUSED.biasedSoftmax);
  const op = tf.customGrad((qq, kk, vv, save) => {
    const [sq, sk, sv] = [grouped(qq as Tensor), kk as Tensor, vv as Tensor];
    const scores = perHead(broadcast ? broadcastScores(sq, sk) : headProducts(sq, sk, 'nt', loop)); // (B, H, T, S)
    const capped = softcap ? tf.tanh(tf.mul(scores, scale / softcap)) : null; // (B, H, T, S)
    const probs = grouped(fusedSoftmax && !capped
      ? tf.engine().runKernel(FUSED.biasedSoftmax, { x: scores, bias }, { scale }) as Tensor
      : tf.softmax(tf.add(capped ? tf.mul(capped, softcap!) : tf.mul(scores, scale), bias), -1)); // (B, G, rep·T, S)
    const keep = drop ? attentionDropoutMask(probs, drop) : null; // (B, G, rep·T, S), 0 or 1/(1 − rate)
    const mixed = keep ? tf.mul(probs, keep) : probs;
    (save as tf.GradSaveFunc)([sq, sk, sv, probs, ...(keep ? [keep] : []), ...(capped ? [grouped(capped)] : [])]);
    return {
      value: perHead(broadcast ? broadcastMix(mixed, sv) : headProducts(mixed, sv, 'nn', loop)), // (B, H, T, hs)
      gradFunc: tidyGrad((dout: Tensor, saved: Tensor[]) => {
        const [q0, k0, v0, p] = saved as [Tensor, Tensor, Tensor, Tensor];
        const m = keep ? saved[4]! : null;
        const th = capped ? saved[keep ? 5 : 4]! : null;
        const mode = unbatched; // tiny backward products (T < 16) also run fine as a loop
        const d = grouped(dout);
        const dmixed = headProducts(d, v0, 'nt', mode); // (B, G, rep·T, S)
        const dprobs = m ? tf.mul(dmixed, m) : dmixed;
        const dv = headProducts(m ? tf.mul(p, m) : p, d, 'tn', mode); // (B, G, S, hs)
        let dscores = fusedSoftmax
          ? tf.engine().runKernel(FUSED.softmaxGrad, { p, dp: dprobs }, { scale }) as Tensor
          : tf.mul(tf.mul(p, tf.sub(dprobs, tf.sum(tf.mul(dprobs, p), -1, true))), scale);
        if (th) dscores = tf.mul(dscores, tf.sub(1, tf.square(th)));
        return [perHead(headProducts(dscores, k0, 'nn', mode)), headProducts(dscores, q0, 'tn', mode), dv];
      }),
    };
  }) as unknown as (q: Tensor, k: Tensor, v: Tensor) => Tensor;
  return op(q, k, v);
}

/** RLHF_FUSED_ATTENTION=0 keeps the per-head products (`attention`) for training on the native backend too. */
export const FUSED_ATTENTION_ENV = 'RLHF_FUSED_ATTENTION';

/** Whether self-attention without a cache can run as one fused kernel each way (`fusedSelfAttention`) here. */
export function fusedSelfAttentionAvailable(): boolean {
  return process.env[FUSED_ATTENTION_ENV] !== '0' && fusedKernel(FUSED.trainAttention) && !isUnbatched();
}

/**
 * `attention` over T positions with no cache, from the projections' outputs to the o-projection's input in one
 * kernel forward and one backward (native/engine/train_attention.cc): q, k and v are read where `layout` puts each
 * head, in `qkv` [B, T, ·] (one fused projection) or in q [B, T, H·hs], k and v [B, T, Hkv·hs]; the output is the
 * heads side by side, [B, T, H·hs], so neither direction transposes a head. The same formulas as `attention`
 * (softmax of the scaled, soft-capped scores plus `bias` [B | 1, H | 1, T, T], dropout mask included: the same seed
 * draws the same mask), with the probabilities saved for the gradient, which comes back in the inputs' layout.
 */
export function fusedSelfAttention(
  qkv: Tensor | [Tensor, Tensor, Tensor], layout: HeadLayout, heads: { H: number; Hkv: number; hs: number },
  bias: Tensor, scale: number, softcap: number | null = null, dropout: AttentionDropout | null = null,
): Tensor {
  const ins = Array.isArray(qkv) ? qkv : [qkv];
  const [B, T] = ins[0]!.shape as [number, number];
  const { H, Hkv, hs } = heads;
  const drop = dropout && dropout.rate > 0 ? dropout : null;
  if (drop && !(drop.rate < 1)) throw new Error(`attention dropout rate must be in [0, 1), got ${drop.rate}`);
  const perBatch = (row: number) => T * row;
  const attrs = {
    dims: [B, T, T, H, Hkv, hs],
    layouts: [layout.qOffset, perBatch(layout.qRow), layout.qRow, layout.headStride, layout.kOffset, perBatch(layout.kRow), layout.kRow, layout.headStride,
      layout.vOffset, perBatch(layout.vRow), layout.vRow, layout.headStride],
    scale, softcap: softcap ?? 0,
  };
  const named = (ts: Tensor[]): Record<string, Tensor> => (ts.length === 3 ? { q: ts[0]!, k: ts[1]!, v: ts[2]! } : { q: ts[0]! });
  const op = tf.customGrad((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const xs = args as Tensor[];
    // The mask of `attention`'s probabilities [B, Hkv, rep·T, T]: the same elements in the same order as [B, H, T, T].
    const keep = drop ? dropoutMask([B, Hkv, (H / Hkv) * T, T], drop.rate, drop.seed) : null;
    const [out, probs] = tf.engine().runKernel(FUSED.trainAttention, { ...named(xs), bias, ...(keep ? { mask: keep } : {}) }, attrs) as Tensor[];
    // Handles of their own on the inputs and the bias (the caller may free it before the backward pass): tidyGrad
    // releases what was saved.
    save([...xs.map((t) => tf.reshape(t, t.shape)), tf.reshape(bias, bias.shape), probs!, ...(keep ? [keep] : [])]);
    return {
      value: out!, // (B, T, H·hs)
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
        const n = xs.length;
        const grads = tf.engine().runKernel(FUSED.trainAttentionGrad,
          { dy, ...named(saved.slice(0, n)), bias: saved[n]!, probs: saved[n + 1]!, ...(keep ? { mask: saved[n + 2]! } : {}) }, attrs) as Tensor[];
        return n === 3 ? grads : grads[0]!;
      }),
    };
  }) as unknown as (...xs: Tensor[]) => Tensor;
  return op(...ins);
}

/**
 * Additive mask [B, 1, T, S] for T new queries after `past` cached positions: key j is visible to query i when
 * j ≤ past + i and attentionMask[b, j] = 1. `attentionMask` is [B, S] (0/1, S = past + T). With a sliding `window`
 * W, also only when past + i − j < W (the query and the W − 1 keys before it, as transformers' sliding-window
 * mask), counted in sequence slots, padding included.
 */
export function causalMaskBias(attentionMask: Tensor, T: number, window: number | null = null): Tensor {
  return tf.tidy(() => {
    const [B, S] = attentionMask.shape as [number, number];
    // Two small additive masks, combined by a broadcast minimum (elementwise logic over [B, 1, T, S] is slow on wasm).
    const padding = tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), MASKED); // (B, S): 0 at real tokens
    return tf.minimum(causalBias(T, S, window), tf.reshape(padding, [B, 1, 1, S]));
  });
}

/** The causal (and sliding-window) part of `causalMaskBias` alone, [1, 1, T, S]: for batches without padding. */
export function causalBias(T: number, S: number, window: number | null = null): Tensor {
  return tf.tidy(() => {
    const past = S - T;
    // Positions as float32 (exact below 2^24): backends compare floats natively, int32 often in JavaScript (the
    // native backend's int32 Greater took 1.7 ms at T = 128, the float32 one 0.02 ms).
    const qi = tf.reshape(tf.range(past, past + T, 1, 'float32'), [T, 1]);
    const kj = tf.reshape(tf.range(0, S, 1, 'float32'), [1, S]);
    const hidden = window ? tf.logicalOr(tf.greater(kj, qi), tf.greaterEqual(tf.sub(qi, kj), window)) : tf.greater(kj, qi);
    return tf.reshape(tf.mul(tf.cast(hidden, 'float32'), MASKED), [1, 1, T, S]); // 0 where key j is visible to query i
  });
}
