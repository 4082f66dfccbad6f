/** Position encodings that differ per architecture: rotary (LLaMA), ALiBi (BLOOM), mask-derived position ids. */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';

/** Position ids from a 0/1 mask [B, S]: cumsum(mask) − 1 at real tokens, 0 (OPT: clamped) at padding. */
export function positionsFromMask(attentionMask: Tensor): Tensor {
  return tf.tidy(() => {
    const m = tf.cast(attentionMask, 'int32');
    return tf.mul(tf.sub(tf.cumsum(m, 1), tf.scalar(1, 'int32')), m);
  });
}

/**
 * Rotary tables cos/sin [B, T, d] for position ids [B, T] and inverse frequencies [d/2] (HF's layout: halves
 * concatenated), both multiplied by `scaling` (YaRN's attention factor; 1 otherwise).
 */
export function rotaryTables(positionIds: Tensor, invFreq: ArrayLike<number>, scaling = 1): { cos: Tensor; sin: Tensor } {
  return tf.tidy(() => {
    // Frequencies computed in float64 then rounded, as torch rounds its float32 1/θ^(2i/d).
    const pos = tf.cast(positionIds, 'float32'); // [B, T]
    const freqs = tf.mul(tf.expandDims(pos, 2), tf.tensor1d(Float32Array.from(invFreq))); // [B, T, d/2]
    const emb = tf.concat([freqs, freqs], 2); // [B, T, d]
    if (scaling === 1) return { cos: tf.cos(emb), sin: tf.sin(emb) };
    return { cos: tf.mul(tf.cos(emb), scaling), sin: tf.mul(tf.sin(emb), scaling) };
  });
}

/** rotate_half: [x1, x2] → [−x2, x1] over the last axis (halves). */
function rotateHalf(x: Tensor, sign: 1 | -1): Tensor {
  const half = x.shape[3]! / 2;
  const [x1, x2] = tf.split(x, [half, half], 3);
  // sign 1: rotate_half; sign −1: its transpose [x2, −x1], which carries the gradient back.
  return sign === 1 ? tf.concat([tf.neg(x2!), x1!], 3) : tf.concat([x2!, tf.neg(x1!)], 3);
}

/**
 * Applies rotary embedding to x [B, H, T, hs] with cos/sin [B, T, hs]: x·cos + rotate_half(x)·sin. The map is
 * linear in x, so its gradient is dy·cos + rotate_halfᵀ(dy·sin) and nothing needs saving (cos/sin are constants).
 */
function applyRotaryFull(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const tableShape = cos.shape;
  if (x.dtype === 'float32' && cos.dtype === 'float32' && fusedKernel(FUSED.rotary)) {
    // The same map and gradient, each one kernel.
    const fused = tf.customGrad((xx, cc, ss, save) => {
      (save as tf.GradSaveFunc)([cc as Tensor, ss as Tensor]);
      return {
        value: tf.engine().runKernel(FUSED.rotary, { x: xx as Tensor, cos: cc as Tensor, sin: ss as Tensor }, { transpose: false }) as Tensor,
        gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => [
          tf.engine().runKernel(FUSED.rotary, { x: dy, cos: saved[0]!, sin: saved[1]! }, { transpose: true }) as Tensor,
          tf.zeros(tableShape), tf.zeros(tableShape),
        ]),
      };
    }) as unknown as (t: Tensor, c: Tensor, s: Tensor) => Tensor;
    return fused(x, cos, sin);
  }
  const op = tf.customGrad((xx, cc, ss, save) => {
    const c = tf.expandDims(cc as Tensor, 1);
    const s = tf.expandDims(ss as Tensor, 1);
    (save as tf.GradSaveFunc)([c, s]);
    return {
      value: tf.add(tf.mul(xx as Tensor, c), tf.mul(rotateHalf(xx as Tensor, 1), s)),
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
        const [sc, sn] = saved as [Tensor, Tensor];
        // cos/sin come from position ids: constants, whose gradient is never used.
        return [tf.add(tf.mul(dy, sc), rotateHalf(tf.mul(dy, sn), -1)), tf.zeros(tableShape), tf.zeros(tableShape)];
      }),
    };
  }) as unknown as (t: Tensor, c: Tensor, s: Tensor) => Tensor;
  return op(x, cos, sin);
}

/**
 * Rotary embedding of x [B, H, T, hs] on its first d = cos.shape[2] dimensions (partial rotary: GPT-NeoX, Phi);
 * the other hs − d pass through unchanged.
 */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const hs = x.shape[3]!;
  const d = cos.shape[2]!;
  if (d === hs) return applyRotaryFull(x, cos, sin);
  const [rot, pass] = tf.split(x, [d, hs - d], 3);
  return tf.concat([applyRotaryFull(rot!, cos, sin), pass!], 3);
}

/** ALiBi slopes per head, as BLOOM defines them (also for head counts that are not powers of two). */
export function alibiSlopes(numHeads: number): Float32Array {
  const closest = 2 ** Math.floor(Math.log2(numHeads));
  const base = 2 ** -(2 ** -(Math.log2(closest) - 3));
  const slopes: number[] = [];
  for (let i = 1; i <= closest; i++) slopes.push(base ** i);
  if (closest !== numHeads) {
    const extraBase = 2 ** -(2 ** -(Math.log2(2 * closest) - 3));
    const extra = Math.min(closest, numHeads - closest);
    for (let i = 1; i <= 2 * extra; i += 2) slopes.push(extraBase ** i);
  }
  return Float32Array.from(slopes);
}

/** ALiBi bias [B, H, 1, S]: slope_h · (cumsum(mask) − 1) · mask for each key position, as BLOOM builds it. */
export function alibiBias(attentionMask: Tensor, numHeads: number): Tensor {
  return tf.tidy(() => {
    const [B, S] = attentionMask.shape as [number, number];
    const pos = tf.cast(positionsFromMask(attentionMask), 'float32'); // [B, S]
    const slopes = tf.reshape(tf.tensor1d(alibiSlopes(numHeads)), [1, numHeads, 1, 1]);
    return tf.mul(slopes, tf.reshape(pos, [B, 1, 1, S]));
  });
}
