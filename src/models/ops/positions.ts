/** Position encodings that differ per architecture: rotary (LLaMA), ALiBi (BLOOM), mask-derived position ids. */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';

/** Position ids from a 0/1 mask [B, S]: cumsum(mask) − 1 at real tokens, 0 (OPT: clamped) at padding. */
export function positionsFromMask(attentionMask: Tensor): Tensor {
  return tf.tidy(() => {
    const m = tf.cast(attentionMask, 'int32');
    return tf.mul(tf.sub(tf.cumsum(m, 1), tf.scalar(1, 'int32')), m);
  });
}

/** Rotary tables cos/sin [B, T, hs] for position ids [B, T] (HF's default rope: halves concatenated). */
export function rotaryTables(positionIds: Tensor, headDim: number, theta: number): { cos: Tensor; sin: Tensor } {
  return tf.tidy(() => {
    const half = headDim / 2;
    const invFreq = new Float32Array(half);
    // Computed in float64 then rounded, as torch computes 1/theta^(2i/d) in float32 from an int64 arange.
    for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.pow(theta, (2 * i) / headDim);
    const pos = tf.cast(positionIds, 'float32'); // [B, T]
    const freqs = tf.mul(tf.expandDims(pos, 2), tf.tensor1d(invFreq)); // [B, T, half]
    const emb = tf.concat([freqs, freqs], 2); // [B, T, hs]
    return { cos: tf.cos(emb), sin: tf.sin(emb) };
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
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const tableShape = cos.shape;
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
