/**
 * Per-token log-probabilities of chosen tokens, and the entropy of each next-token distribution, straight from
 * hidden states and an LM head stored as [V, C], without holding the [N, V] logits. PPO needs both for every answer
 * token of a minibatch: through logits, B=8 answers of 128 tokens at GPT-2's 50k vocabulary are 206 MiB per [N, V]
 * tensor, and log-softmax, softmax, entropy and their gradients need about eight of them. Here rows go through in
 * chunks of a few hundred; the backward pass recomputes each chunk's logits (one more product) instead of keeping them.
 *
 * For a row with logits z, lse = log Σ exp z, p = exp(z − lse):
 *   logp = z_target − lse,  H = lse − Σ p·z
 *   ∂logp/∂z = onehot(target) − p,  ∂H/∂z = −p ⊙ (z − lse + H)
 * so dz = dlogp·(onehot − p) − dH·p ⊙ (z − lse + H), then dh = dz·W and dW = dzᵀ·h.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { capChunk, FUSED_CHUNK_LOGITS, headGradChunk, headPieces, LOSS_ROWS_PER_CHUNK, piecesLogits, splitSizes, type HeadWeight } from './lm_head_loss.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';
import { isPackedWeight } from './packed_weight.js';
import { packedMatMul } from './packed_linear.js';
import { scatterAt } from './loss.js';
import { VOCAB_CHUNK } from './vocab_projection.js';
import { gradientsRecording, tidyGrad } from './tidy_grad.js';

interface ChunkStats {
  z: Tensor; // (R, V) logits (soft-capped when the model caps them)
  slope: Tensor | null; // (R, V) dz/draw of the cap, 1 − tanh²
  lse: Tensor; // (R, 1)
  p: Tensor; // (R, V)
  flatIdx: Tensor; // (R) index of each row's target in the flattened (R·V) logits
  logp: Tensor; // (R)
  entropy: Tensor; // (R)
}

function chunkStats(raw: Tensor, targets: Tensor, cap: number | null): ChunkStats {
  const R = raw.shape[0]!; // raw: (R, V) logits before the cap
  const { logits: z, slope } = capChunk(raw, cap);
  const V = z.shape[1]!;
  const p = tf.softmax(z, -1);
  const lse = tf.sub(tf.max(z, -1, true), tf.log(tf.max(p, -1, true))); // (R, 1): the largest p is exp(max z − lse)
  const flatIdx = tf.add(tf.mul(tf.range(0, R, 1, 'int32'), tf.scalar(V, 'int32')), targets);
  const logp = tf.sub(tf.gather(tf.reshape(z, [R * V]), flatIdx), tf.reshape(lse, [R]));
  const entropy = tf.sub(tf.reshape(lse, [R]), tf.sum(tf.mul(p, z), -1));
  return { z, slope, lse, p, flatIdx, logp, entropy };
}

/** dz [R, V] of a chunk from its stats and the incoming gradient d [R, 2] (of logp and entropy). */
function logitsGrad(s: ChunkStats, d: Tensor): Tensor {
  const [R, V] = s.z.shape as [number, number];
  const dlogp = tf.slice(d, [0, 0], [R, 1]);
  const dH = tf.slice(d, [0, 1], [R, 1]);
  // −dlogp·p − dH·p⊙(z − lse + H), then + dlogp at each row's target
  const H = tf.reshape(s.entropy, [R, 1]);
  const dzDense = tf.neg(tf.mul(s.p, tf.add(dlogp, tf.mul(dH, tf.add(tf.sub(s.z, s.lse), H)))));
  const flat = tf.reshape(dzDense, [R * V]);
  const atTarget = tf.add(tf.gather(flat, s.flatIdx), tf.reshape(dlogp, [R]));
  const dzCapped = tf.reshape(scatterAt(flat, s.flatIdx, atTarget, R, V), [R, V]);
  return s.slope ? tf.mul(dzCapped, s.slope) : dzCapped;
}

/**
 * h [N, C], head [V, C], targets [N] (int) → [N, 2]: column 0 log p(target), column 1 the entropy (nats).
 * Differentiable in h and head; `frozenHead` (an adapter trains, the head does not, as with a packed head):
 * differentiable in h only, so the backward pass never forms the [V, C] head gradient (at GPT-2's vocabulary about
 * 0.5 GiB of accumulators and copies per minibatch). `softcap`: the logits soft-capped first (Gemma 2's
 * final_logit_softcapping).
 */
export function headLogProbsAndEntropy(
  h: Tensor, head: HeadWeight, targets: Tensor, rowsPerChunk = LOSS_ROWS_PER_CHUNK, softcap: number | null = null, frozenHead = false,
): Tensor {
  const [N, C] = h.shape as [number, number];
  if (head.shape[1] !== C) throw new Error(`headLogProbsAndEntropy: head [${head.shape}] does not match hidden width ${C}`);
  if (targets.size !== N) throw new Error(`headLogProbsAndEntropy: ${targets.size} targets for ${N} rows`);
  const V = head.shape[0]!;
  // On the native backend: one kernel per chunk for the stats and one for dz, and products that read the head [V, C]
  // as it lies (no vocabulary-split, transposed copy of it per call), larger chunks where the vocabulary is small.
  const fused = !softcap && h.dtype === 'float32' && fusedKernel(FUSED.logProbEntropyRows);
  const rowSizes = splitSizes(N, fused && rowsPerChunk === LOSS_ROWS_PER_CHUNK ? Math.max(rowsPerChunk, Math.floor(FUSED_CHUNK_LOGITS / V)) : rowsPerChunk);
  const vocabSizes = splitSizes(V, VOCAB_CHUNK);
  const rows = (t: Tensor, r0: number, R: number) => (t.rank === 1 ? tf.slice(t, [r0], [R]) : tf.slice(t, [r0, 0], [R, t.shape[1]!]));
  const tg = tf.reshape(tf.cast(targets, 'int32'), [N]);
  /** The logits of a chunk of rows: the packed product, the head as it lies (fused), or its transposed pieces. */
  const logitsFor = (W: HeadWeight): ((hc: Tensor) => Tensor) => {
    if (isPackedWeight(W)) return (hc) => packedMatMul(hc, W, true);
    if (fused) return (hc) => tf.matMul(hc, W, false, true);
    const { WTj } = headPieces(W, vocabSizes);
    return (hc) => piecesLogits(hc, WTj);
  };
  /** (R, 2): log p(target) and the entropy of a chunk. */
  const statsOf = (logits: Tensor, tc: Tensor): Tensor => {
    if (fused) return tf.engine().runKernel(FUSED.logProbEntropyRows, { logits, targets: tc }, {}) as Tensor;
    const s = chunkStats(logits, tc, softcap);
    return tf.stack([s.logp, s.entropy], 1);
  };
  /** (R, V): the gradient of a chunk's logits for dc (R, 2); the logits are not read again. */
  const gradOf = (logits: Tensor, tc: Tensor, dc: Tensor): Tensor =>
    fused
      ? (tf.engine().runKernel(FUSED.logProbEntropyRows, { logits, targets: tc, d: dc }, { inPlace: true }) as Tensor)
      : logitsGrad(chunkStats(logits, tc, softcap), dc);
  const forward = (x: Tensor, W: HeadWeight): Tensor =>
    tf.tidy(() => {
      const logitsOf = logitsFor(W);
      const parts: Tensor[] = [];
      let r0 = 0;
      for (const R of rowSizes) {
        parts.push(tf.tidy(() => statsOf(logitsOf(rows(x, r0, R)), rows(tg, r0, R)))); // (R, 2)
        r0 += R;
      }
      return parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
    });
  try {
    if (!gradientsRecording()) return forward(h, head);
    if (isPackedWeight(head) || frozenHead) {
      // Frozen head: only dh = dz · W, from the recomputed chunk logits.
      const frozenOp = tf.customGrad((hh, save) => {
        (save as tf.GradSaveFunc)([hh as Tensor, tf.clone(tg)]);
        return {
          value: forward(hh as Tensor, head),
          gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
            const [x, t] = saved as [Tensor, Tensor];
            const logitsOf = logitsFor(head);
            const back = (dz: Tensor) => (isPackedWeight(head) ? packedMatMul(dz, head, false) : tf.matMul(dz, head)); // (R, C)
            const parts: Tensor[] = [];
            let r0 = 0;
            for (const R of rowSizes) {
              parts.push(tf.tidy(() => back(gradOf(logitsOf(rows(x, r0, R)), rows(t, r0, R), rows(dy, r0, R)))));
              r0 += R;
            }
            return parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
          }),
        };
      }) as unknown as (h: Tensor) => Tensor;
      return frozenOp(h);
    }
    const op = tf.customGrad((hh, ww, save) => {
      (save as tf.GradSaveFunc)([hh as Tensor, ww as Tensor, tf.clone(tg)]);
      return {
        value: forward(hh as Tensor, ww as Tensor),
        gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
          const [x, W, t] = saved as [Tensor, Tensor, Tensor];
          const dhParts: Tensor[] = [];
          if (fused) {
            // dh = dz·W and dW = Σ dzᵀ·h [V, C], both reading W and dz as they lie
            let dW: Tensor | null = null;
            let r0 = 0;
            for (const R of rowSizes) {
              const step = tf.tidy(() => {
                const hc = rows(x, r0, R);
                const dz = gradOf(tf.matMul(hc, W, false, true), rows(t, r0, R), rows(dy, r0, R));
                const prod = tf.matMul(dz, hc, true, false);
                return { dh: tf.matMul(dz, W), dW: dW ? tf.add(dW, prod) : prod };
              });
              if (dW) tf.dispose(dW);
              dW = step.dW;
              dhParts.push(step.dh);
              r0 += R;
            }
            return [dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts, 0), dW!];
          }
          const { Wj, WTj } = headPieces(W, vocabSizes);
          let dWT: Tensor[] | null = null; // Σ hᵀ·dz_j, [C, vc] per vocabulary piece
          let r0 = 0;
          for (const R of rowSizes) {
            const step = tf.tidy(() => {
              const hc = rows(x, r0, R);
              const dz = gradOf(piecesLogits(hc, WTj), rows(t, r0, R), rows(dy, r0, R));
              const grads = headGradChunk(dz, hc, Wj, vocabSizes, dWT);
              return { dh: grads.dh, next: grads.dWT };
            });
            if (dWT) tf.dispose(dWT);
            dWT = step.next;
            dhParts.push(step.dh);
            r0 += R;
          }
          const dh = dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts, 0);
          const dW = tf.concat(dWT!.map((x) => tf.transpose(x, [1, 0])), 0); // (V, C)
          return [dh, dW];
        }),
      };
    }) as unknown as (h: Tensor, w: Tensor) => Tensor;
    return op(h, head);
  } finally {
    tg.dispose();
  }
}
