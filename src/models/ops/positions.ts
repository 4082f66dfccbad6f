/** Position encodings that differ per architecture: rotary (LLaMA), ALiBi (BLOOM), mask-derived position ids. */
import { tf, type Tensor } from '../../engine/tf.js';

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

/** Applies rotary embedding to x [B, H, T, hs] with cos/sin [B, T, hs]. */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const hs = x.shape[3]!;
  const half = hs / 2;
  const c = tf.expandDims(cos, 1);
  const s = tf.expandDims(sin, 1);
  const x1 = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, half]);
  const x2 = tf.slice(x, [0, 0, 0, half], [-1, -1, -1, half]);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, c), tf.mul(rotated, s));
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
