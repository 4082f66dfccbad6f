/**
 * KL estimators (Schulman, "Approximating KL Divergence", 2020), for KL(π ‖ π_ref) from samples drawn from π: PPO's
 * reward penalty and GRPO's loss term both use them. Tested in test/ppo_functional.test.ts.
 */
import { tf, type Tensor } from '../engine/tf.js';

/** k1 = log π(a) − log π_ref(a): unbiased, can be negative per sample. */
export function klK1(logp: Tensor, logpRef: Tensor): Tensor {
  return tf.sub(logp, logpRef);
}

/**
 * k3 = (r − 1) − log r with r = π_ref(a)/π(a): unbiased and never negative. The ratio is reference over policy; the
 * reverse order (ColossalChat's early bug) estimates a different quantity and can go negative in expectation.
 */
export function klK3(logp: Tensor, logpRef: Tensor): Tensor {
  return tf.tidy(() => {
    const logR = tf.sub(logpRef, logp);
    return tf.sub(tf.sub(tf.exp(logR), 1), logR);
  });
}

export type KlEstimator = 'k1' | 'k3';

export function klEstimate(kind: KlEstimator, logp: Tensor, logpRef: Tensor): Tensor {
  return kind === 'k1' ? klK1(logp, logpRef) : klK3(logp, logpRef);
}
