/**
 * The GRPO objective on per-token log-probs (TRL 1.x GRPOTrainer._compute_loss): the clipped importance ratio
 * against the rollout policy, an optional k3 KL to the reference, and one of four ways to aggregate token losses.
 * Tested against TRL's values and gradients (test/grpo_functional.test.ts).
 *
 * Legend: B completions, N completion tokens (padded). mask [B, N] is 1 on completion tokens through the first EOS.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { klK3 } from '../rollout/kl.js';

export type LossType = 'grpo' | 'dr_grpo' | 'dapo' | 'bnpo';
export const LOSS_TYPES: readonly LossType[] = ['grpo', 'dr_grpo', 'dapo', 'bnpo'];

export interface GrpoLossOptions {
  lossType: LossType;
  /** Lower clip ε: ratios below 1 − ε are clipped where the advantage is negative. */
  epsilonLow: number;
  /** Upper clip ε (DAPO's clip-higher when above epsilonLow). */
  epsilonHigh: number;
  /** Weight of the k3 KL to the reference; 0: no KL term (refLogp may be null). */
  beta: number;
  /** dr_grpo's constant normaliser: the maximum completion length. */
  maxCompletionLength: number;
  /**
   * dapo's normaliser: completion tokens of the whole global batch divided by the number of processes whose
   * gradients are averaged (so each rank's Σ over tokens / this equals the global token mean after averaging).
   * Default: this batch's tokens (one process).
   */
  dapoNormalizer?: number;
}

export interface GrpoLossOutput {
  loss: tf.Scalar;
  /** Share of completion tokens clipped low (ratio < 1 − ε, advantage < 0). */
  clipLow: tf.Scalar;
  /** Share clipped high (ratio > 1 + ε_high, advantage > 0). */
  clipHigh: tf.Scalar;
  /** Share clipped either way. */
  clipRegion: tf.Scalar;
  /** Masked mean of the per-token k3 KL (null with β 0). */
  kl: tf.Scalar | null;
}

/** Σ_tokens (x·mask) aggregated as the loss type says. */
export function aggregateTokenLoss(perToken: Tensor, mask: Tensor, o: Pick<GrpoLossOptions, 'lossType' | 'maxCompletionLength' | 'dapoNormalizer'>): tf.Scalar {
  return tf.tidy(() => {
    const masked = tf.mul(perToken, mask);
    const B = mask.shape[0]!;
    switch (o.lossType) {
      case 'grpo': // Shao et al. 2024: mean over each sequence's tokens, then over sequences
        return tf.mean(tf.div(tf.sum(masked, 1), tf.maximum(tf.sum(mask, 1), 1))) as tf.Scalar;
      case 'bnpo': // token mean over the local batch (TRL's bnpo)
        return tf.div(tf.sum(masked), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
      case 'dr_grpo': // Liu et al. 2025: a constant normaliser B·L_max, no length bias
        return tf.div(tf.sum(masked), B * o.maxCompletionLength) as tf.Scalar;
      case 'dapo': // Yu et al. 2025 (DAPO): token mean over the global batch
        return tf.div(tf.sum(masked), o.dapoNormalizer ?? Math.max(1, tf.sum(mask).dataSync()[0]!)) as tf.Scalar;
    }
  });
}

/**
 * −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·k3(π, π_ref) per token, aggregated; ρ = exp(logp − oldLogp).
 * advantages [B, N] (sequence advantages broadcast, or per-token for REINFORCE++).
 */
export function grpoLoss(logp: Tensor, oldLogp: Tensor, refLogp: Tensor | null, advantages: Tensor, mask: Tensor, o: GrpoLossOptions): GrpoLossOutput {
  const out = tf.tidy(() => {
    const m = tf.cast(mask, 'float32');
    const ratio = tf.exp(tf.sub(logp, oldLogp));
    const clipped = tf.clipByValue(ratio, 1 - o.epsilonLow, 1 + o.epsilonHigh);
    let perToken = tf.neg(tf.minimum(tf.mul(ratio, advantages), tf.mul(clipped, advantages)));
    let kl: tf.Scalar | undefined;
    const tokens = tf.maximum(tf.sum(m), 1);
    if (o.beta !== 0) {
      if (!refLogp) throw new Error('grpoLoss: beta ≠ 0 needs the reference log-probs');
      const k3 = klK3(logp, refLogp);
      perToken = tf.add(perToken, tf.mul(k3, o.beta));
      kl = tf.div(tf.sum(tf.mul(k3, m)), tokens) as tf.Scalar;
    }
    const low = tf.logicalAnd(tf.less(ratio, 1 - o.epsilonLow), tf.less(advantages, 0));
    const high = tf.logicalAnd(tf.greater(ratio, 1 + o.epsilonHigh), tf.greater(advantages, 0));
    const share = (b: Tensor) => tf.div(tf.sum(tf.mul(tf.cast(b, 'float32'), m)), tokens) as tf.Scalar;
    return {
      loss: aggregateTokenLoss(perToken, m, o),
      clipLow: share(low),
      clipHigh: share(high),
      clipRegion: share(tf.logicalOr(low, high)),
      ...(kl ? { kl } : {}),
    };
  });
  return { ...out, kl: out.kl ?? null };
}
