/** The per-stage summary table: first, last, min and max of the metrics a reader looks at first. */
import type { MetricPoint } from './read_logs.js';

/**
 * The headline metrics of each stage (SFT, reward model, PPO, GRPO, DPO), in the order they are shown. A stage that logged none
 * of them gets its first `FALLBACK_COUNT` keys instead.
 */
export const MAIN_METRICS = [
  'train/loss',
  'eval/loss',
  'reward/accuracy',
  'eval/reward/accuracy',
  'reward/margin',
  'eval/reward/margin',
  'reward/mean',
  'reward/score',
  'rewards/accuracies',
  'eval/rewards/accuracies',
  'rewards/margins',
  'eval/rewards/margins',
  'objective/rlhf_reward',
  'objective/kl',
  'policy/clipfrac',
  'loss/policy',
  'loss/value',
  'loss/ptx',
  'loss/total',
  'response/length',
  // GRPO (TRL's names)
  'reward',
  'reward_std',
  'frac_reward_zero_std',
  'kl',
  'policy_loss',
  'completions/mean_length',
] as const;
const FALLBACK_COUNT = 6;

export interface SummaryRow {
  key: string;
  /** How many finite values were logged. */
  count: number;
  first?: MetricPoint & { value: number };
  last?: MetricPoint & { value: number };
  min?: MetricPoint & { value: number };
  max?: MetricPoint & { value: number };
}

/** Which keys of a stage the summary shows. */
export function summaryKeys(keys: readonly string[]): string[] {
  const main = MAIN_METRICS.filter((k) => keys.includes(k));
  return main.length > 0 ? main : keys.slice(0, FALLBACK_COUNT);
}

/** First/last/min/max over the finite values of one series (steps sorted ascending); NaN/null are skipped. */
export function summarizeSeries(key: string, points: readonly MetricPoint[]): SummaryRow {
  const finite = points.filter((p): p is MetricPoint & { value: number } => p.value !== null && Number.isFinite(p.value));
  if (finite.length === 0) return { key, count: 0 };
  let min = finite[0]!;
  let max = finite[0]!;
  for (const p of finite) {
    if (p.value < min.value) min = p;
    if (p.value > max.value) max = p;
  }
  return { key, count: finite.length, first: finite[0]!, last: finite[finite.length - 1]!, min, max };
}

/** The summary rows of one stage. */
export function summarizeStage(metrics: ReadonlyMap<string, readonly MetricPoint[]>): SummaryRow[] {
  return summaryKeys([...metrics.keys()]).map((key) => summarizeSeries(key, metrics.get(key)!));
}
