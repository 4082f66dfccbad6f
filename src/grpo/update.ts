/**
 * The GRPO update on a scored rollout batch (trainer step 5), and the micro-batching it shares with scoring.
 *
 * Legend: B completions (prompts × G, rows grouped by prompt), P padded prompt length, n completion tokens of a chunk.
 */
import { tf } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import type { Strategy } from '../strategies/strategy.js';
import type { Optimization } from '../trainer/optimization.js';
import { answerLogProbsAndEntropy } from '../rollout/logprobs.js';
import { klK3 } from '../rollout/kl.js';
import type { Rollouts } from '../rollout/sample.js';
import type { GrpoPrompt } from './data.js';
import { grpoLoss, type GrpoLossOptions } from './loss.js';
import { needsReference, type GrpoConfig } from './config.js';

export type GrpoUpdateConfig = Pick<GrpoConfig, 'advantage' | 'beta' | 'lossType' | 'epsilon' | 'epsilonHigh' | 'maxNewTokens' | 'numIterations' | 'microBatchSize'>;

const sum = (xs: number[]) => xs.reduce((a, v) => a + v, 0);

/** One scored rollout batch, rows grouped by prompt. */
export interface ScoredBatch {
  rollouts: Rollouts;
  prompts: GrpoPrompt[];
  completions: string[];
  rewards: number[];
  perSource: (number | null)[][];
  oldLogps: number[][] | null;
  refLogps: number[][] | null;
  advantages: number[][];
  /** Rows the update uses (all, or those of groups with reward spread under --filter_zero_std). */
  keep: number[];
  zeroStdGroups: number;
  scoreSeconds: number;
}

/** Row chunks of at most `size` completions, each trimmed to its longest completion. */
export function rowChunks(rows: number[], r: Rollouts, size: number): { rows: number[]; n: number }[] {
  const out: { rows: number[]; n: number }[] = [];
  for (let i = 0; i < rows.length; i += size) {
    const part = rows.slice(i, i + size);
    out.push({ rows: part, n: Math.max(1, ...part.map((b) => r.lengths[b]!)) });
  }
  return out;
}

/** Ids, masks, completion tokens and completion mask of some rows, cut to n completion tokens. */
export function chunkTensors(r: Rollouts, rows: number[], n: number) {
  return tf.tidy(() => ({
    ids: tf.tensor2d(rows.map((b) => r.sequences[b]!.slice(0, r.P + n)), [rows.length, r.P + n], 'int32'),
    mask: tf.tensor2d(rows.map((b) => r.fullMask[b]!.slice(0, r.P + n)), [rows.length, r.P + n], 'int32'),
    answer: tf.tensor2d(rows.map((b) => r.answers[b]!.slice(0, n)), [rows.length, n], 'int32'),
    action: tf.tensor2d(rows.map((b) => r.actionMask[b]!.slice(0, n)), [rows.length, n], 'float32'),
  }));
}

/**
 * Step 5 of a GRPO step, shared by the trainer and the benchmark: numIterations AdamW steps on the kept rows of a
 * scored batch, each accumulated over micro-batches whose aggregates are rescaled so that their sum is the loss
 * type's aggregate over the whole batch. Returns the metrics (policy_loss, entropy, clip ratios, kl with β > 0,
 * grad norm, lr), averaged over the iterations.
 */
export function grpoUpdate(policy: DecoderModel, opt: Optimization, strategy: Strategy, s: ScoredBatch, c: GrpoUpdateConfig): Record<string, number> {
  const r = s.rollouts;
  const anyRows = strategy.anyRank(s.keep.length > 0);
  const out: Record<string, number> = { policy_loss: 0, entropy: 0, 'clip_ratio/low_mean': 0, 'clip_ratio/high_mean': 0, 'clip_ratio/region_mean': 0, 'train/grad_norm': 0, 'train/lr': opt.lrAt(opt.globalStep) };
  if (needsReference(c)) out.kl = 0;
  if (!anyRows) return out; // every group had equal rewards: nothing to learn from this batch
  // A rank without rows still joins the collective step, with a zero-weighted loss on one row.
  const rows = s.keep.length ? s.keep : [0];
  const weight = s.keep.length ? 1 : 0;
  const tokens = sum(rows.map((b) => r.lengths[b]!));
  const globalTokens = strategy.worldSize > 1 ? strategy.reduceMetrics({ t: tokens * weight }, 'sum').t! : tokens;
  const lossBeta = c.advantage === 'reinforce_pp' ? 0 : c.beta; // REINFORCE++ puts the KL in the reward instead
  const lossOpts: GrpoLossOptions = {
    lossType: c.lossType, epsilonLow: c.epsilon, epsilonHigh: c.epsilonHigh ?? c.epsilon, beta: lossBeta, maxCompletionLength: c.maxNewTokens,
    dapoNormalizer: Math.max(1, globalTokens / strategy.worldSize),
  };
  const chunks = rowChunks(rows, r, c.microBatchSize);
  const slice = (m: number[][] | null, part: number[], n: number) => (m ? tf.tensor2d(part.map((b) => m[b]!.slice(0, n)), [part.length, n]) : null);
  for (let it = 0; it < c.numIterations; it++) {
    const acc = { loss: 0, entropy: 0, low: 0, high: 0, region: 0, kl: 0 };
    for (const { rows: part, n } of chunks) {
      const t = chunkTensors(r, part, n);
      const adv = slice(s.advantages, part, n)!;
      const oldT = slice(s.oldLogps, part, n);
      const refT = lossBeta ? slice(s.refLogps, part, n) : null;
      const chunkTokens = sum(part.map((b) => r.lengths[b]!));
      // Rescale each chunk's aggregate so the sum over chunks is the aggregate over the whole batch.
      const scale = weight * (c.lossType === 'bnpo' ? chunkTokens / tokens : c.lossType === 'dapo' ? 1 : part.length / rows.length);
      try {
        const res = opt.backward((aux) => {
          const { logp, entropy } = answerLogProbsAndEntropy(policy, t.ids, t.mask, t.answer, r.P); // (b, n) each
          // With one iteration the rollout policy is the current one: its log-probs are these values, detached.
          const old = oldT ?? tf.tensor2d(logp.dataSync(), [part.length, n]);
          const l = grpoLoss(logp, old, refT, adv, t.action, lossOpts);
          aux.entropy = tf.div(tf.sum(tf.mul(entropy, t.action)), Math.max(1, chunkTokens));
          aux.low = l.clipLow;
          aux.high = l.clipHigh;
          aux.region = l.clipRegion;
          if (l.kl) aux.kl = l.kl;
          return tf.mul(l.loss, scale) as tf.Scalar;
        });
        const share = chunkTokens / Math.max(1, tokens);
        acc.loss += res.loss;
        acc.entropy += res.aux.entropy! * share;
        acc.low += res.aux.low! * share;
        acc.high += res.aux.high! * share;
        acc.region += res.aux.region! * share;
        acc.kl += (res.aux.kl ?? 0) * share;
      } finally {
        for (const x of [...Object.values(t), adv, oldT, refT]) x?.dispose();
      }
    }
    const st = opt.step();
    const k = 1 / c.numIterations;
    out.policy_loss! += acc.loss * k;
    out.entropy! += acc.entropy * k;
    out['clip_ratio/low_mean']! += acc.low * k;
    out['clip_ratio/high_mean']! += acc.high * k;
    out['clip_ratio/region_mean']! += acc.region * k;
    out['train/grad_norm']! += st.gradNorm * k;
    out['train/lr'] = st.lr;
    if (lossBeta) out.kl! += acc.kl * k;
  }
  if (c.advantage === 'reinforce_pp' && s.refLogps && s.oldLogps) out.kl = rolloutKl(s.oldLogps, s.refLogps, r.actionMask);
  return out;
}

/** Masked mean of k3(old, ref) over the rollout's completion tokens. */
function rolloutKl(old: number[][], ref: number[][], mask: number[][]): number {
  return tf.tidy(() => {
    const m = tf.tensor2d(mask);
    const k = tf.mul(klK3(tf.tensor2d(old), tf.tensor2d(ref)), m);
    return tf.sum(k).dataSync()[0]! / Math.max(1, tf.sum(m).dataSync()[0]!);
  });
}

