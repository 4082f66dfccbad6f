/**
 * Pairwise ranking losses of a reward model (Bradley–Terry: P(chosen ≻ rejected) = σ(r_c − r_r)), as ColossalChat's
 * `LogSigLoss` and `LogExpLoss` define them. Mathematically both are softplus(r_r − r_c); they are kept as two
 * named options because ColossalChat offers both, and each is written so that large margins neither overflow nor
 * lose their gradient:
 *
 *   log_sig: −log σ(r_c − r_r) = softplus(r_r − r_c)   via tfjs's Softplus kernel (thresholded, so stable; its
 *            registered gradient σ(x) saves its input, unlike tf.logSigmoid's, whose gradient breaks under tf.tidy)
 *   log_exp: log(1 + exp(r_r − r_c))    via max(x, 0) + log1p(exp(−|x|)), gradient σ(x) given explicitly
 *
 * Both take rewards [B] and return the mean over the batch (a scalar).
 */
import { tf, type Tensor } from '../engine/tf.js';

export const PAIRWISE_LOSSES = ['log_sig', 'log_exp'] as const;
export type PairwiseLossName = (typeof PAIRWISE_LOSSES)[number];

export type PairwiseLoss = (chosen: Tensor, rejected: Tensor) => tf.Scalar;

function checkPair(op: string, chosen: Tensor, rejected: Tensor): void {
  if (chosen.rank !== 1 || rejected.rank !== 1 || chosen.shape[0] !== rejected.shape[0]) {
    throw new Error(`${op}: chosen and rejected rewards must both be [B], got [${chosen.shape}] and [${rejected.shape}]`);
  }
}

/** mean(−log σ(r_c − r_r)), computed as mean(softplus(r_r − r_c)). */
export function logSigLoss(chosen: Tensor, rejected: Tensor): tf.Scalar {
  checkPair('logSigLoss', chosen, rejected);
  return tf.tidy(() => tf.mean(tf.softplus(tf.sub(rejected, chosen))) as tf.Scalar);
}

/**
 * log(1 + exp(x)) for any x. Written as max(x, 0) + log1p(exp(−|x|)) so exp never overflows; the gradient is σ(x),
 * given explicitly because autodiff through max and |x| would give 1 or 0 instead of ½ at x = 0 (tied rewards).
 */
const log1pExp: (x: Tensor) => Tensor = tf.customGrad((x, save) => {
  const xt = x as Tensor;
  (save as tf.GradSaveFunc)([xt]);
  return {
    value: tf.add(tf.relu(xt), tf.log1p(tf.exp(tf.neg(tf.abs(xt))))),
    gradFunc: (dy: Tensor, saved: Tensor[]) => tf.mul(dy, tf.sigmoid(saved[0]!)),
  };
}) as unknown as (x: Tensor) => Tensor;

/** mean(log(1 + exp(r_r − r_c))). */
export function logExpLoss(chosen: Tensor, rejected: Tensor): tf.Scalar {
  checkPair('logExpLoss', chosen, rejected);
  return tf.tidy(() => tf.mean(log1pExp(tf.sub(rejected, chosen))) as tf.Scalar);
}

export function pairwiseLoss(name: PairwiseLossName): PairwiseLoss {
  switch (name) {
    case 'log_sig':
      return logSigLoss;
    case 'log_exp':
      return logExpLoss;
    default:
      throw new Error(`unknown reward loss "${String(name)}" (choose one of: ${PAIRWISE_LOSSES.join(', ')})`);
  }
}

/** Batch statistics of a pair of reward vectors [B]: accuracy (strictly r_c > r_r), mean rewards, mean margin. */
export function pairMetrics(chosen: Tensor, rejected: Tensor): { accuracy: tf.Scalar; chosen: tf.Scalar; rejected: tf.Scalar; margin: tf.Scalar } {
  return tf.tidy(() => ({
    accuracy: tf.mean(tf.cast(tf.greater(chosen, rejected), 'float32')) as tf.Scalar,
    chosen: tf.mean(chosen) as tf.Scalar,
    rejected: tf.mean(rejected) as tf.Scalar,
    margin: tf.mean(tf.sub(chosen, rejected)) as tf.Scalar,
  }));
}
