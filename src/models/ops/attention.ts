import { tf, type Tensor } from '../../engine/tf.js';
import { isUnbatched } from './matmul.js';
import { tidyGrad } from './tidy_grad.js';

/** A mask value that stays finite under addition (a fully masked row softmaxes to uniform, never NaN). */
export const MASKED = -1e9;

/**
 * Below this many query positions (decoding) the forward products are broadcast multiply-and-sum: a decode step's
 * q·kᵀ and P·v are a few hundred thousand multiply-adds, which elementwise kernels do in a millisecond while
 * per-head 2-D products pay a call each and tfjs's batched kernel runs at ~0.1 GFLOP/s on these shapes.
 */
const MIN_ROWS_FOR_HEAD_LOOP = 16;

/** q [B, H, T, hs] · k [B, H, S, hs]ᵀ → [B, H, T, S], as a broadcast product summed over hs. */
function broadcastScores(q: Tensor, k: Tensor): Tensor {
  return tf.sum(tf.mul(tf.expandDims(q, 3), tf.expandDims(k, 2)), -1);
}

/** P [B, H, T, S] · v [B, H, S, hs] → [B, H, T, hs], as a broadcast product summed over S. */
function broadcastMix(p: Tensor, v: Tensor): Tensor {
  const vT = tf.expandDims(tf.transpose(v, [0, 1, 3, 2]), 2); // (B, H, 1, hs, S)
  return tf.sum(tf.mul(tf.expandDims(p, 3), vT), -1);
}

type Form = 'nn' | 'nt' | 'tn';

function repeatKv(x: Tensor, rep: number): Tensor {
  if (rep === 1) return x;
  const [B, Hkv, S, hs] = x.shape as [number, number, number, number];
  // Rank-3 tile (tfjs has no rank-5 tile gradient): each kv head is repeated for its `rep` query heads.
  return tf.reshape(tf.tile(tf.reshape(x, [B * Hkv, 1, S * hs]), [1, rep, 1]), [B, Hkv * rep, S, hs]);
}

function swapLast2(x: Tensor): Tensor {
  return tf.transpose(x, [0, 1, 3, 2]);
}

/**
 * Per-head products of a [B, Ha, ·, ·] and b [B, Hb, ·, ·] in form nn (a·b), nt (a·bᵀ) or tn (aᵀ·b). Heads pair up
 * as grouped-query attention does: query head h uses kv head ⌊h / rep⌋. With `groupSum`, the per-query-head
 * results are summed within each kv group (the gradient of a shared kv head), giving B·Hkv results.
 */
function headProducts(a: Tensor, b: Tensor, form: Form, rep: number, groupSum: boolean, loop: boolean): Tensor {
  const [B, Ha] = a.shape as [number, number];
  const at = form === 'tn' ? swapLast2(a) : a;
  const bt = form === 'nt' ? swapLast2(b) : b;
  const M = at.shape[2]!;
  const N = bt.shape[3]!;
  if (!loop) {
    // One batched kernel (GPU backends, or tiny decode-step products): repeat shared kv heads, sum groups after.
    const bFull = groupSum || rep === 1 ? bt : repeatKv(bt, rep);
    const out = tf.matMul(at, bFull); // (B, Ha, M, N)
    return groupSum && rep > 1 ? tf.sum(tf.reshape(out, [B, Ha / rep, rep, M, N]), 2) : out;
  }
  // wasm/cpu: a loop of untransposed 2-D products (the fast form on XNNPACK), on slices that share nothing.
  const as = tf.unstack(tf.reshape(at, [B * Ha, M, at.shape[3]!]));
  const bs = tf.unstack(tf.reshape(bt, [-1, bt.shape[2]!, N]));
  const Hb = bt.shape[1]!;
  const outs: Tensor[] = [];
  for (let i = 0; i < as.length; i++) {
    const bi = groupSum ? i : Math.floor(i / Ha) * Hb + Math.floor((i % Ha) / rep);
    const prod = tf.matMul(as[i]!, bs[bi]!);
    if (groupSum && i % rep !== 0) {
      const acc = outs.pop()!;
      outs.push(tf.add(acc, prod));
      acc.dispose();
      prod.dispose();
    } else outs.push(prod);
  }
  tf.dispose([...as, ...bs]);
  const out = tf.stack(outs);
  tf.dispose(outs);
  return tf.reshape(out, [B, groupSum ? Ha / rep : Ha, M, N]);
}

/**
 * Scaled dot-product attention over heads, with an additive bias carrying the causal/padding mask (and ALiBi).
 * Shapes: q [B, H, T, hs], k and v [B, Hkv, S, hs] (grouped heads shared as HF's repeat_kv does), bias broadcastable
 * to [B, H, T, S]. Returns [B, H, T, hs].
 *
 * One custom-gradient op: it saves q, k, v and the probabilities only (tfjs's own graph kept every score tensor
 * its ops touched until the backward pass ended) and frees them as soon as its gradient is computed:
 *   P = softmax(q·kᵀ·scale + bias), out = P·v
 *   dP = dout·vᵀ, dv = Pᵀ·dout, dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale, dq = dS·k, dk = dSᵀ·q
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number): Tensor {
  const T = q.shape[2]!;
  const rep = q.shape[1]! / k.shape[1]!;
  const loop = isUnbatched() && T >= MIN_ROWS_FOR_HEAD_LOOP;
  const broadcast = isUnbatched() && !loop;
  const op = tf.customGrad((qq, kk, vv, save) => {
    const [sq, sk, sv] = [qq as Tensor, kk as Tensor, vv as Tensor];
    const scores = broadcast ? broadcastScores(sq, repeatKv(sk, rep)) : headProducts(sq, sk, 'nt', rep, false, loop); // (B, H, T, S)
    const probs = tf.softmax(tf.add(tf.mul(scores, scale), bias), -1);
    (save as tf.GradSaveFunc)([sq, sk, sv, probs]);
    return {
      value: broadcast ? broadcastMix(probs, repeatKv(sv, rep)) : headProducts(probs, sv, 'nn', rep, false, loop), // (B, H, T, hs)
      gradFunc: tidyGrad((dout: Tensor, saved: Tensor[]) => {
        const [q0, k0, v0, p] = saved as [Tensor, Tensor, Tensor, Tensor];
        const dprobs = headProducts(dout, v0, 'nt', rep, false, loop); // (B, H, T, S)
        const dv = headProducts(p, dout, 'tn', rep, true, loop); // (B, Hkv, S, hs)
        const dscores = tf.mul(tf.mul(p, tf.sub(dprobs, tf.sum(tf.mul(dprobs, p), -1, true))), scale);
        return [headProducts(dscores, k0, 'nn', rep, false, loop), headProducts(dscores, q0, 'tn', rep, true, loop), dv];
      }),
    };
  }) as unknown as (q: Tensor, k: Tensor, v: Tensor) => Tensor;
  return op(q, k, v);
}

/**
 * Additive mask [B, 1, T, S] for T new queries after `past` cached positions: key j is visible to query i when
 * j ≤ past + i and attentionMask[b, j] = 1. `attentionMask` is [B, S] (0/1, S = past + T).
 */
export function causalMaskBias(attentionMask: Tensor, T: number): Tensor {
  return tf.tidy(() => {
    const [B, S] = attentionMask.shape as [number, number];
    const past = S - T;
    // Two small additive masks, combined by a broadcast minimum (elementwise logic over [B, 1, T, S] is slow on wasm).
    const qi = tf.reshape(tf.range(past, past + T, 1, 'int32'), [T, 1]);
    const kj = tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]);
    const causal = tf.mul(tf.cast(tf.greater(kj, qi), 'float32'), MASKED); // (T, S): 0 where j ≤ past + i
    const padding = tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), MASKED); // (B, S): 0 at real tokens
    return tf.minimum(tf.reshape(causal, [1, 1, T, S]), tf.reshape(padding, [B, 1, 1, S]));
  });
}
