/**
 * Which metrics share a chart, decided from their names (TRL's naming: `train/loss`, `eval/loss`, `rewards/chosen`,
 * `objective/kl`, `reward/mean`, ...). Related series are read together: train vs eval of the same quantity, chosen
 * vs rejected, actor vs critic, the reward with the KL that pays for it. A metric with fewer than two finite values,
 * or one that never changed (a fixed learning rate, a KL coefficient), gets no chart (a single point or a flat line
 * says nothing) and goes into the table of final values instead.
 */
import type { MetricPoint } from './read_logs.js';

export interface ChartGroup {
  /** Chart title. */
  title: string;
  /** The metrics drawn, in legend order. */
  keys: string[];
  /**
   * `shared`: one y axis for every line (same quantity). `dual`: two metrics on different scales (reward and KL),
   * each with its own axis, left and right.
   */
  axis: 'shared' | 'dual';
  /** Learning rates span decades and sit near zero: their axis uses exponent notation. */
  kind: 'value' | 'lr';
}

export interface MetricGrouping {
  charts: ChartGroup[];
  /** Metrics with fewer than two finite values or a constant one, shown as a table of final values. */
  finals: string[];
}

/** Reward metrics that pair with the KL on one chart, most specific first (PPO: the reward model's score before the KL penalty, TRL's names; GRPO). */
const REWARD_KL_PAIRS: readonly [reward: readonly string[], kl: string][] = [
  [['reward/mean', 'objective/scores', 'objective/rlhf_reward'], 'objective/kl'],
  [['reward'], 'kl'],
];

/** Whether a series has something to draw: two or more finite values, not all equal. */
export function worthCharting(points: readonly MetricPoint[]): boolean {
  const finite = points.filter((p) => p.value !== null && Number.isFinite(p.value)).map((p) => p.value as number);
  return finite.length >= 2 && finite.some((v) => v !== finite[0]);
}

/** `train/lr`, `train/actor_lr`, `learning_rate`. */
export function isLearningRate(key: string): boolean {
  return /(^|[/_])lr$|learning_rate$/.test(key);
}

/** The key with its last path segment's `from` word swapped for `to` (`rewards/chosen` -> `rewards/rejected`), or null. */
function swapLastSegmentWord(key: string, from: string, to: string): string | null {
  const slash = key.lastIndexOf('/');
  const head = key.slice(0, slash + 1);
  const last = key.slice(slash + 1);
  const re = new RegExp(`(^|_)${from}($|_)`);
  return re.test(last) ? head + last.replace(re, `$1${to}$2`) : null;
}

/** The training-side twin of an eval metric: `eval/loss` -> `train/loss` or `loss`; `eval/reward/accuracy` -> `reward/accuracy`. */
function trainTwins(evalKey: string): string[] {
  if (!evalKey.startsWith('eval/')) return [];
  const rest = evalKey.slice('eval/'.length);
  return [`train/${rest}`, rest];
}

/** Groups the metrics of one stage into charts and a final-values list. Every key lands in exactly one of them. */
export function groupMetrics(metrics: ReadonlyMap<string, readonly MetricPoint[]>): MetricGrouping {
  const order = [...metrics.keys()];
  const finals = order.filter((k) => !worthCharting(metrics.get(k)!));
  const chartable = new Set(order.filter((k) => !finals.includes(k)));
  const taken = new Set<string>();
  const groups: ChartGroup[] = [];
  const add = (group: ChartGroup): void => {
    if (group.keys.some((k) => taken.has(k) || !chartable.has(k))) return;
    for (const k of group.keys) taken.add(k);
    groups.push(group);
  };

  const lrs = order.filter((k) => chartable.has(k) && isLearningRate(k));
  if (lrs.length > 0) add({ title: lrs.length === 1 ? lrs[0]! : 'learning rate', keys: lrs, axis: 'shared', kind: 'lr' });

  for (const [rewards, kl] of REWARD_KL_PAIRS) {
    const reward = rewards.find((k) => chartable.has(k) && !taken.has(k));
    if (reward !== undefined && chartable.has(kl)) add({ title: `${reward} and ${kl}`, keys: [reward, kl], axis: 'dual', kind: 'value' });
  }

  for (const key of order) {
    if (!chartable.has(key) || taken.has(key)) continue;
    const rejected = swapLastSegmentWord(key, 'chosen', 'rejected');
    if (rejected !== null && chartable.has(rejected)) {
      // The held-out pair of the same two series joins them (drawn dashed): train and eval margins side by side.
      const evalPair = [`eval/${key}`, `eval/${rejected}`];
      const withEval = !key.startsWith('eval/') && evalPair.every((k) => chartable.has(k) && !taken.has(k));
      add({ title: `${key} vs ${rejected}${withEval ? ' (eval dashed)' : ''}`, keys: withEval ? [key, rejected, ...evalPair] : [key, rejected], axis: 'shared', kind: 'value' });
      continue;
    }
    const critic = swapLastSegmentWord(key, 'actor', 'critic');
    // Two networks of different sizes: each gets its own axis.
    if (critic !== null && chartable.has(critic)) add({ title: `${key} and ${critic}`, keys: [key, critic], axis: 'dual', kind: 'value' });
  }

  for (const key of order) {
    if (!chartable.has(key) || taken.has(key)) continue;
    const twin = trainTwins(key).find((k) => chartable.has(k) && !taken.has(k));
    if (twin !== undefined) add({ title: `${twin} vs ${key}`, keys: [twin, key], axis: 'shared', kind: 'value' });
  }

  for (const key of order) if (chartable.has(key) && !taken.has(key)) add({ title: key, keys: [key], axis: 'shared', kind: 'value' });

  // Charts in the order their first metric was logged.
  const firstIndex = (g: ChartGroup) => Math.min(...g.keys.map((k) => order.indexOf(k)));
  groups.sort((a, b) => firstIndex(a) - firstIndex(b));
  return { charts: groups, finals };
}

/** The y-axis title of a metric: its unit where the name tells it. */
export function metricUnit(key: string): string | null {
  if (isLearningRate(key)) return 'learning rate';
  if (/accurac/.test(key)) return 'fraction correct';
  if (/(^|\/)kl$|approxkl/.test(key)) return 'KL (nats)';
  if (/tokens_per_s$/.test(key)) return 'tokens/s';
  if (/_mb$/.test(key)) return 'MB';
  if (/length$/.test(key)) return 'tokens';
  if (/(^|[/_])loss$/.test(key)) return 'loss';
  return null;
}
