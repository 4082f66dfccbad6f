/**
 * Making experience from one batch of prompts, in numbered steps:
 *   1. rollout     the actor samples answers (KV cache, left-padded prompts, each row stops at its first EOS)
 *   2. score       one forward each over prompt + answer: log-probs of the answer tokens under the actor and the
 *                  initial model, the critic's values, the reward model's score (at the last real token, or the
 *                  reduction its directory records, e.g. the sum over the answer's tokens)
 *   3. rewards     per token −β·KL_t, plus the clipped score on the last answer token
 *   4. advantages  GAE (or ColossalChat's sequence-level R − V), then whitened over the batch
 *
 * Legend: B rollouts, P padded prompt length, N answer length, V vocabulary. Values and log-probs are taken at the
 * position *before* each answer token (the state its action was chosen in), so position P−1+t scores answer token t.
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import type { ValueModel, ValueReduction } from '../models/value_model.js';
import { reduceValues } from '../models/value_model.js';
import { answerLogProbs, answerValues, referenceLogProbs } from '../rollout/logprobs.js';
import { klEstimate, klK1, klK3, type KlEstimator } from '../rollout/kl.js';
import { whiten } from '../rollout/masked.js';
import { endedWithEos, sampleRollouts, type SampleOptions } from '../rollout/sample.js';
import { gae, sequenceAdvantages } from './functional.js';
import type { AdvantageKind } from './config.js';

// The scoring forwards live in src/rollout (shared with GRPO); re-exported for PPO's users.
export { answerHidden, answerLogProbs, answerLogProbsAndEntropy, answerValues } from '../rollout/logprobs.js';

/** One rollout, trimmed to its real tokens; everything per answer token is aligned with `answer`. */
export interface ExperienceItem {
  /** The prompt's real tokens (no padding). */
  prompt: number[];
  /** Answer tokens through the first EOS inclusive (or all of them when the row never stopped). */
  answer: number[];
  /** log π_old(a_t) under the actor at rollout time. */
  logProbs: number[];
  /** log π_ref(a_t) under the initial model. */
  refLogProbs: number[];
  /** Critic values V(s_t) at rollout time. */
  values: number[];
  advantages: number[];
  returns: number[];
  /** The reward model's score (before clipping). */
  score: number;
}

export interface ExperienceStats {
  scores: number[];
  /** Σ_t k1 per rollout (the usual objective/kl). */
  klK1: number[];
  /** Σ_t k3 per rollout. */
  klK3: number[];
  /** Σ_t −β·KL_t per rollout. */
  nonScoreReward: number[];
  responseLengths: number[];
  /** Rollouts that ended with EOS. */
  endedWithEos: number;
  meanValue: number;
  generateSeconds: number;
  scoreSeconds: number;
}

export interface ExperienceModels {
  actor: DecoderModel;
  /** The reference model; when it is the actor itself, it is read with the adapter off. */
  initial: DecoderModel;
  critic: ValueModel;
  reward: ValueModel;
  rewardReduction: ValueReduction;
}

/** How rollouts are sampled (the rollout's own options), plus the reward shaping of PPO's experience. */
export interface ExperienceOptions extends SampleOptions {
  klCoef: number;
  klEstimator: KlEstimator;
  rewardClip: number;
  gamma: number;
  lam: number;
  advantage: AdvantageKind;
  whitenAdvantages: boolean;
  /** Called at moments of high tensor memory, for the peak-memory report. */
  onMemory?: () => void;
}

function now(): number {
  return performance.now() / 1000;
}

function rows(t: Tensor): number[][] {
  return t.arraySync() as number[][];
}

export function makeExperience(m: ExperienceModels, promptIds: number[][], promptMask: number[][], o: ExperienceOptions): { items: ExperienceItem[]; stats: ExperienceStats } {
  const B = promptIds.length;
  const P = promptIds[0]!.length;

  // 1. rollout
  const t0 = now();
  const gen = sampleRollouts(m.actor, promptIds, promptMask, {
    maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP,
    eosTokenId: o.eosTokenId, padTokenId: o.padTokenId, rng: o.rng,
  });
  const { N, fullMask, answers } = gen;
  const t1 = now();

  // 2. score: one forward per model over prompt + answer
  const scored = tf.tidy(() => {
    const ids = tf.tensor2d(gen.sequences, [B, P + N], 'int32');
    const mask = tf.tensor2d(fullMask, [B, P + N], 'int32');
    const answer = tf.tensor2d(answers, [B, N], 'int32');
    const logp = answerLogProbs(m.actor, ids, mask, answer, P);
    const refLogp = referenceLogProbs(m.actor, m.initial, ids, mask, answer, P);
    const values = answerValues(m.critic, ids, mask, P, N);
    const action = tf.tensor2d(gen.actionMask, [B, N], 'float32');
    // The answer's positions (the prompt's P, left-padded, come first), for the answer-only reward reductions.
    const answerMask = tf.concat([tf.zeros([B, P]), action], 1); // (B, P + N)
    const score = reduceValues(m.reward.values(ids, mask), mask, m.rewardReduction, ids, m.reward.padTokenId, answerMask);
    o.onMemory?.();
    return {
      logp, refLogp, values, score,
      penaltyKl: tf.mul(klEstimate(o.klEstimator, logp, refLogp), action),
      k1: tf.mul(klK1(logp, refLogp), action),
      k3: tf.mul(klK3(logp, refLogp), action),
    };
  });
  const logp = rows(scored.logp);
  const refLogp = rows(scored.refLogp);
  const values = rows(scored.values);
  const penaltyKl = rows(scored.penaltyKl);
  const k1 = rows(scored.k1);
  const k3 = rows(scored.k3);
  const scores = Array.from(scored.score.dataSync());
  for (const t of Object.values(scored)) t.dispose();
  const t2 = now();

  // 3. rewards: −β·KL on every answer token, the clipped score on the last one
  const clip = (s: number) => (o.rewardClip > 0 ? Math.min(o.rewardClip, Math.max(-o.rewardClip, s)) : s);
  const lengths = gen.lengths;
  const rewards = penaltyKl.map((row) => row.map((kl) => -o.klCoef * kl));
  const sum = (xs: number[]) => xs.reduce((a, v) => a + v, 0);

  // 4. advantages and returns
  let adv: { advantages: number[][]; returns: number[][] };
  if (o.advantage === 'gae') {
    rewards.forEach((row, b) => {
      if (lengths[b]! > 0) row[lengths[b]! - 1]! += clip(scores[b]!);
    });
    adv = gae(rewards, values, gen.actionMask, o.gamma, o.lam);
  } else {
    // ColossalChat: R = score − β·(mean per-token KL over the answer), one advantage R − V̄ per sequence.
    const R = scores.map((s, b) => clip(s) - o.klCoef * (lengths[b]! ? sum(penaltyKl[b]!) / lengths[b]! : 0));
    adv = sequenceAdvantages(R, values, gen.actionMask);
  }
  let advantages = adv.advantages;
  if (o.whitenAdvantages) {
    advantages = tf.tidy(() => rows(whiten(tf.tensor2d(advantages, [B, N]), tf.tensor2d(gen.actionMask, [B, N]))));
  }

  const items: ExperienceItem[] = [];
  for (let b = 0; b < B; b++) {
    const n = lengths[b]!;
    items.push({
      prompt: promptIds[b]!.filter((_, j) => promptMask[b]![j]),
      answer: answers[b]!.slice(0, n),
      logProbs: logp[b]!.slice(0, n),
      refLogProbs: refLogp[b]!.slice(0, n),
      values: values[b]!.slice(0, n),
      advantages: advantages[b]!.slice(0, n),
      returns: adv.returns[b]!.slice(0, n),
      score: scores[b]!,
    });
  }
  const valueSum = values.reduce((a, row, b) => a + sum(row.slice(0, lengths[b])), 0);
  const stats: ExperienceStats = {
    scores,
    klK1: k1.map(sum),
    klK3: k3.map(sum),
    nonScoreReward: penaltyKl.map((row) => -o.klCoef * sum(row)),
    responseLengths: lengths,
    endedWithEos: endedWithEos(gen, o.eosTokenId).filter(Boolean).length,
    meanValue: valueSum / Math.max(1, sum(lengths)),
    generateSeconds: t1 - t0,
    scoreSeconds: t2 - t1,
  };
  return { items, stats };
}
