/**
 * Masked statistics over answer tokens, shared by PPO and GRPO. `mask` is 1 on answer tokens up to and including the
 * first EOS, 0 after it. Tested in test/ppo_functional.test.ts.
 */
import { tf, type Tensor } from '../engine/tf.js';

/** Σ x·mask / Σ mask over all elements (axis undefined) or along `axis`; an all-zero mask gives 0, not NaN. */
export function maskedMean(x: Tensor, mask: Tensor, axis?: number): Tensor {
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const num = tf.sum(tf.mul(x, m), axis);
    const den = tf.sum(m, axis);
    return tf.div(num, tf.maximum(den, 1e-8));
  });
}

/** Masked variance over all elements; `unbiased` applies Bessel's correction n/(n−1) as TRL's masked_var does. */
export function maskedVar(x: Tensor, mask: Tensor, unbiased = true): Tensor {
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const mean = maskedMean(x, m);
    const v = maskedMean(tf.square(tf.sub(x, mean)), m);
    if (!unbiased) return v;
    const n = tf.sum(m);
    // n/(n−1) with n ≤ 1 would divide by zero: a single value has no spread to correct.
    return tf.where(tf.greater(n, 1), tf.mul(v, tf.div(n, tf.maximum(tf.sub(n, 1), 1))), v);
  });
}

/**
 * (x − mean) / sqrt(var + eps) with masked statistics; masked positions come back as 0. With `shiftMean` false the
 * mean is added back (only the scale changes), as TRL does for rewards.
 */
export function whiten(x: Tensor, mask: Tensor, shiftMean = true, eps = 1e-8): Tensor {
  return tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const mean = maskedMean(x, m);
    const scaled = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(maskedVar(x, m), eps)));
    return tf.mul(shiftMean ? scaled : tf.add(scaled, mean), m);
  });
}
