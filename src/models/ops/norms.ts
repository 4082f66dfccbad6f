import { tf, type Tensor } from '../../engine/tf.js';

/** LayerNorm over the last axis (biased variance, as torch). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), axis, true);
  let y = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
  if (weight) y = tf.mul(y, weight);
  if (bias) y = tf.add(y, bias);
  return y;
}

/** RMSNorm over the last axis (LLaMA): x · rsqrt(mean(x²) + eps) · weight. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const ms = tf.mean(tf.square(x), x.rank - 1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
}
