/**
 * The pure pieces of PPO: masked statistics, GAE, KL estimators, the clipped policy and value losses, entropy.
 * No state, no models; each is tested against hand-computed values (test/ppo_functional.test.ts).
 *
 * Legend: B sequences, N answer (action) tokens, V vocabulary. `mask` is 1 on answer tokens up to and including the
 * first EOS, 0 after it.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { maskedMean } from '../rollout/masked.js';

// Masked statistics and KL estimators live in src/rollout (PPO and GRPO share them); re-exported for PPO's users.
export { maskedMean, maskedVar, whiten } from '../rollout/masked.js';
export { klK1, klK3, klEstimate, type KlEstimator } from '../rollout/kl.js';

// ---------------------------------------------------------------------------------------------------------------
// Advantages

export interface AdvantagesAndReturns {
  /** [B][N]; 0 at masked positions. */
  advantages: number[][];
  /** advantages + values, the critic's regression target; 0 at masked positions. */
  returns: number[][];
}

/**
 * Generalised advantage estimation (Schulman et al. 2016) per row, walking backwards over the answer tokens:
 *   δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γ·λ·A_{t+1},   R_t = A_t + V_t
 * where t+1 is the next unmasked position and V after the last one is 0 (the episode ends there).
 */
export function gae(rewards: number[][], values: number[][], mask: number[][], gamma: number, lam: number): AdvantagesAndReturns {
  const advantages: number[][] = [];
  const returns: number[][] = [];
  rewards.forEach((r, b) => {
    const v = values[b]!;
    const m = mask[b]!;
    if (v.length !== r.length || m.length !== r.length) throw new Error(`gae: row ${b} has ${r.length} rewards, ${v.length} values, ${m.length} mask entries`);
    const adv = new Array<number>(r.length).fill(0);
    const ret = new Array<number>(r.length).fill(0);
    let nextValue = 0;
    let nextAdv = 0;
    for (let t = r.length - 1; t >= 0; t--) {
      if (!m[t]) continue;
      const delta = r[t]! + gamma * nextValue - v[t]!;
      nextAdv = delta + gamma * lam * nextAdv;
      adv[t] = nextAdv;
      ret[t] = nextAdv + v[t]!;
      nextValue = v[t]!;
    }
    advantages.push(adv);
    returns.push(ret);
  });
  return { advantages, returns };
}

/**
 * ColossalChat's (coati's) sequence-level advantage: one reward per sequence R_b minus the critic's mean value over
 * the answer, the same for every answer token; the critic regresses every answer token's value to R_b.
 */
export function sequenceAdvantages(sequenceRewards: number[], values: number[][], mask: number[][]): AdvantagesAndReturns {
  const advantages: number[][] = [];
  const returns: number[][] = [];
  sequenceRewards.forEach((R, b) => {
    const v = values[b]!;
    const m = mask[b]!;
    let sum = 0;
    let n = 0;
    m.forEach((on, t) => {
      if (on) {
        sum += v[t]!;
        n++;
      }
    });
    const vMean = n ? sum / n : 0;
    advantages.push(m.map((on) => (on ? R - vMean : 0)));
    returns.push(m.map((on) => (on ? R : 0)));
  });
  return { advantages, returns };
}

// ---------------------------------------------------------------------------------------------------------------
// Losses

export interface PolicyLossOutput {
  /** Masked mean of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(logp − logp_old). */
  loss: tf.Scalar;
  /** Share of answer tokens where the clipped term was the larger one (the gradient is cut there). */
  clipfrac: tf.Scalar;
  /** ½·mean((logp − logp_old)²), TRL's approxkl between the new and the rollout policy. */
  approxkl: tf.Scalar;
}

/** PPO's clipped surrogate objective (Schulman et al. 2017, eq. 7), as a loss to minimise. */
export function policyLoss(logp: Tensor, oldLogp: Tensor, advantages: Tensor, mask: Tensor, clipEps: number): PolicyLossOutput {
  const logRatio = tf.sub(logp, oldLogp);
  const ratio = tf.exp(logRatio);
  const unclipped = tf.mul(tf.neg(advantages), ratio);
  const clipped = tf.mul(tf.neg(advantages), tf.clipByValue(ratio, 1 - clipEps, 1 + clipEps));
  return {
    loss: maskedMean(tf.maximum(unclipped, clipped), mask) as tf.Scalar,
    clipfrac: maskedMean(tf.cast(tf.greater(clipped, unclipped), 'float32'), mask) as tf.Scalar,
    approxkl: tf.mul(maskedMean(tf.square(logRatio), mask), 0.5) as tf.Scalar,
  };
}

export interface ValueLossOutput {
  /** ½·masked mean of max((V − R)², (V_clip − R)²), V_clip = V_old + clip(V − V_old, −c, c). */
  loss: tf.Scalar;
  /** Share of answer tokens where the clipped error was the larger one. */
  clipfrac: tf.Scalar;
}

/** The clipped value loss of PPO2/TRL: the critic may move at most `clip` from its rollout values without penalty. */
export function valueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, clip: number): ValueLossOutput {
  const vClipped = tf.add(oldValues, tf.clipByValue(tf.sub(values, oldValues), -clip, clip));
  const err = tf.square(tf.sub(values, returns));
  const errClipped = tf.square(tf.sub(vClipped, returns));
  return {
    loss: tf.mul(maskedMean(tf.maximum(err, errClipped), mask), 0.5) as tf.Scalar,
    clipfrac: maskedMean(tf.cast(tf.greater(errClipped, err), 'float32'), mask) as tf.Scalar,
  };
}

/** Per-position entropy −Σ_v p log p of the distributions in logits [..., V] → [...]. */
export function entropyFromLogits(logits: Tensor): Tensor {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits, -1);
    return tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), -1));
  });
}
