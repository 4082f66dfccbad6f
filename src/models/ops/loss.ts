import { tf, type Tensor } from '../../engine/tf.js';

export const IGNORE_INDEX = -100;

/**
 * Causal-LM cross-entropy as HF computes it: logits [B, T, V] predict labels shifted left by one; positions whose
 * label is -100 are ignored; the mean is over the remaining tokens of the whole batch.
 */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  return tf.tidy(() => {
    const [B, T, V] = logits.shape as [number, number, number];
    const lg = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [B * (T - 1), V]);
    const lb = tf.reshape(tf.slice(labels, [0, 1], [B, T - 1]), [B * (T - 1)]);
    return crossEntropy(lg, lb);
  });
}

/** Mean cross-entropy of logits [N, V] against int labels [N], ignoring IGNORE_INDEX. */
export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  const V = logits.shape[1]!;
  const valid = tf.notEqual(labels, IGNORE_INDEX);
  const safe = tf.where(valid, labels, tf.zerosLike(labels));
  const logp = tf.logSoftmax(logits, -1);
  const picked = tf.sum(tf.mul(logp, tf.cast(tf.oneHot(tf.cast(safe, 'int32'), V), 'float32')), -1);
  const mask = tf.cast(valid, 'float32');
  const count = tf.maximum(tf.sum(mask), 1);
  return tf.div(tf.neg(tf.sum(tf.mul(picked, mask))), count);
}

/** Per-token log-probabilities of `targets` [B, T] under logits [B, T, V] (no shift). */
export function tokenLogProbs(logits: Tensor, targets: Tensor): Tensor {
  return tf.tidy(() => {
    const V = logits.shape[2]!;
    const logp = tf.logSoftmax(logits, -1);
    return tf.sum(tf.mul(logp, tf.cast(tf.oneHot(tf.cast(targets, 'int32'), V), 'float32')), -1);
  });
}
