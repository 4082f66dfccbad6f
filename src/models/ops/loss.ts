/**
 * Token losses over the vocabulary, written for the CPU backends: one softmax pass (XNNPACK's softmax is ~10×
 * faster than its exp) and a gradient formed as softmax·(−g) with g added back at the target (one [N, V] product
 * and one scatter), instead of tfjs's log-softmax gradient and an [N, V] one-hot product.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { reshape } from './lean.js';
import { installKernelOverrides } from './kernel_overrides.js';

export const IGNORE_INDEX = -100;

/**
 * log softmax(logits)[i, idx[i]] for logits [N, V] and int32 targets [N] (in range), as [N].
 * Forward: lse = max − log(max softmax) (the largest probability is ≥ 1/V, so its log is exact enough), minus the
 * picked logit. Gradient: dlogits[i, :] = g_i·(onehot(idx_i) − softmax_i).
 */
const pickedLogProb = tf.customGrad((logits, targets, save) => {
  const x = logits as Tensor;
  const [N, V] = x.shape as [number, number];
  const flatIdx = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), targets as Tensor); // (N)
  const probs = tf.softmax(x, -1); // (N, V)
  const lse = tf.sub(tf.max(x, -1), tf.log(tf.max(probs, -1))); // (N)
  const picked = tf.gather(tf.reshape(x, [N * V]), flatIdx); // (N)
  // Saved: the logits (alive anyway while the caller's tape runs) rather than a second [N, V] tensor of
  // probabilities; the backward pass recomputes the softmax.
  (save as tf.GradSaveFunc)([x, flatIdx, targets as Tensor]);
  return {
    value: tf.sub(picked, lse),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sx, idx, t] = saved as [Tensor, Tensor, Tensor];
      const p = tf.softmax(sx, -1);
      const g = tf.reshape(dy, [N]);
      const negScaled = tf.reshape(tf.mul(p, tf.reshape(tf.neg(g), [N, 1])), [N * V]); // −g·softmax
      const atTarget = tf.add(tf.gather(negScaled, idx), g); // g·(1 − p_target)
      const grad = scatterAt(negScaled, idx, atTarget, N, V);
      return [tf.reshape(grad, [N, V]), tf.zeros(t.shape)];
    }),
  };
}) as unknown as (logits: Tensor, targets: Tensor) => Tensor;

/** flat [N·V] with flat[idx[i]] = values[i] (idx distinct). */
export function scatterAt(flat: Tensor, idx: Tensor, values: Tensor, N: number, V: number): Tensor {
  if (tf.getKernel('TensorScatterUpdate', tf.getBackend())) return tf.tensorScatterUpdate(flat, tf.reshape(idx, [N, 1]), values);
  // Backends without the kernel: add the difference through a one-hot mask.
  const oneHot = tf.cast(tf.oneHot(tf.mod(idx, tf.scalar(V, 'int32')), V), 'float32'); // (N, V)
  const delta = tf.sub(values, tf.gather(flat, idx));
  return tf.add(flat, tf.reshape(tf.mul(oneHot, tf.reshape(delta, [N, 1])), [N * V]));
}

/**
 * Causal-LM cross-entropy as HF computes it: logits [B, T, V] predict labels shifted left by one; positions whose
 * label is -100 are ignored; the mean is over the remaining tokens of the whole batch. The shift moves the labels
 * (the last position gets -100) rather than slicing the [B, T, V] logits. Labels [B, T + 1] give the last position
 * a target too (nanoGPT's blocks: `nextTokenTargets`).
 */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  return tf.tidy(() => {
    const [B, T, V] = logits.shape as [number, number, number];
    return crossEntropy(reshape(logits, [B * T, V]), nextTokenTargets(labels, T));
  });
}

/**
 * labels → the flat targets [B·T] positions 0..T-1 of the inputs predict: labels[t+1]. Labels [B, T] (aligned with
 * the inputs, as HF's) leave the last position without one (IGNORE_INDEX); labels [B, T + 1] carry it.
 */
export function nextTokenTargets(labels: Tensor, inputLength?: number): Tensor {
  return tf.tidy(() => {
    const [B, L] = labels.shape as [number, number];
    const T = inputLength ?? L;
    if (L !== T && L !== T + 1) throw new Error(`nextTokenTargets: labels of ${L} positions for ${T} inputs (expected ${T} or ${T + 1})`);
    const shifted = tf.slice(tf.cast(labels, 'int32'), [0, 1], [B, L - 1]);
    const next = L === T ? tf.concat([shifted, tf.fill([B, 1], IGNORE_INDEX, 'int32')], 1) : shifted;
    return tf.reshape(next, [B * T]);
  });
}

/** Mean cross-entropy of logits [N, V] against int labels [N], ignoring IGNORE_INDEX. */
export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  installKernelOverrides();
  const lb = tf.cast(labels, 'int32');
  const valid = tf.notEqual(lb, IGNORE_INDEX);
  const safe = tf.where(valid, lb, tf.zerosLike(lb));
  const mask = tf.cast(valid, 'float32');
  const count = tf.maximum(tf.sum(mask), 1);
  return tf.div(tf.neg(tf.sum(tf.mul(pickedLogProb(logits, safe), mask))), count);
}

/** Per-token log-probabilities of `targets` [B, T] under logits [B, T, V] (no shift). */
export function tokenLogProbs(logits: Tensor, targets: Tensor): Tensor {
  return tf.tidy(() => {
    installKernelOverrides();
    const [B, T, V] = logits.shape as [number, number, number];
    const lp = pickedLogProb(reshape(logits, [B * T, V]), tf.reshape(tf.cast(targets, 'int32'), [B * T]));
    return reshape(lp, [B, T]);
  });
}
