/**
 * Metric logging shared by every trainer: one JSON object per line in `<logDir>/metrics.jsonl`, the same scalars in a
 * TensorBoard event file, and sample generations in `<logDir>/samples.jsonl`.
 *
 * Every write goes straight to the file descriptor (`writeSync`), so what was logged survives a crash of the process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeEvent, frameRecord, type SummaryValue } from './tfevents.js';

/**
 * The one table of metric key prefixes. Every key a trainer logs starts with one of these, so `val/` can never mean
 * both "value" and "validation".
 */
export const METRIC_PREFIXES = {
  'train/': 'training-loop bookkeeping: train/loss, train/lr, train/grad_norm, train/epoch, train/tokens',
  'eval/': 'anything measured on held-out data; the train-time key with eval/ in front (eval/loss, eval/reward/accuracy)',
  'objective/': 'PPO objective terms: objective/kl, objective/entropy, objective/non_score_reward, objective/rlhf_reward',
  'policy/': 'actor update statistics: policy/approxkl, policy/clipfrac, policy/entropy, policy/ratio',
  'value/': 'critic (value function) statistics: value/clipfrac, value/mean, value/error',
  'loss/': 'loss terms: loss/policy, loss/value, loss/ptx, loss/total',
  'reward/': 'reward-model and PPO scores: reward/chosen, reward/rejected, reward/margin, reward/accuracy, reward/score',
  'response/': 'what the actor generated: response/length (tokens per answer)',
  'time/': 'wall-clock and throughput: time/step_s, time/tokens_per_s, time/generate_s',
  // DPO family, TRL's own names (so dashboards carry over)
  'rewards/': 'implicit rewards β·log(π/π_ref): rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins',
  'logps/': 'summed completion log-probs under the policy: logps/chosen, logps/rejected',
  'logits/': 'mean completion logit over the vocabulary: logits/chosen, logits/rejected',
} as const;

/**
 * The GRPO stage logs TRL's GRPOTrainer names instead, so users' dashboards carry over: these prefixes (per reward
 * function, what was generated, clipped shares) and the unprefixed names below.
 */
export const TRL_GRPO_PREFIXES = {
  'rewards/': 'per reward function: rewards/<fn>/mean, rewards/<fn>/std',
  'completions/': 'what the policy generated: completions/mean_length, completions/clipped_ratio',
  'clip_ratio/': 'share of completion tokens clipped: clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean',
} as const;
export const TRL_GRPO_METRICS = ['reward', 'reward_std', 'frac_reward_zero_std', 'kl', 'entropy', 'policy_loss'] as const;

export type MetricPrefix = keyof typeof METRIC_PREFIXES;

/** Throws unless `key` starts with a prefix of `METRIC_PREFIXES` and has a name after it. */
export function checkMetricKey(key: string): void {
  if ((TRL_GRPO_METRICS as readonly string[]).includes(key)) return;
  const trl = Object.keys(TRL_GRPO_PREFIXES).find((p) => key.startsWith(p));
  if (trl !== undefined && key.length > trl.length) return;
  const prefix = (Object.keys(METRIC_PREFIXES) as MetricPrefix[]).find((p) => key.startsWith(p));
  if (prefix === undefined || key.length === prefix.length) {
    throw new Error(
      `metric key '${key}' must start with one of ${Object.keys(METRIC_PREFIXES).join(', ')} and name the metric`,
    );
  }
}

/** Where `MetricsLogger` writes. */
export const METRICS_FILE = 'metrics.jsonl';
export const SAMPLES_FILE = 'samples.jsonl';

/** Appends metrics to `<logDir>/metrics.jsonl` and a TensorBoard event file, samples to `<logDir>/samples.jsonl`. */
export class MetricsLogger {
  /** Path of the TensorBoard event file this logger writes. */
  readonly eventFile: string;
  private readonly metricsFd: number;
  private readonly eventsFd: number;
  private samplesFd: number | undefined;
  private closed = false;

  constructor(
    readonly logDir: string,
    /** Clock in seconds, replaceable for tests. */
    private readonly now: () => number = () => Date.now() / 1000,
  ) {
    fs.mkdirSync(logDir, { recursive: true });
    this.metricsFd = fs.openSync(path.join(logDir, METRICS_FILE), 'a');
    const wallTime = this.now();
    this.eventFile = uniquePath(path.join(logDir, `events.out.tfevents.${Math.floor(wallTime)}.${os.hostname()}`));
    this.eventsFd = fs.openSync(this.eventFile, 'wx');
    this.writeEvent({ wallTime, step: 0, fileVersion: 'brain.Event:2' });
  }

  /** Logs scalars at `step`: one JSON line `{step, ...metrics}` and one TensorBoard event. */
  log(step: number, metrics: Record<string, number>): void {
    this.checkOpen();
    if (!Number.isSafeInteger(step) || step < 0) throw new Error(`MetricsLogger.log: step must be an integer >= 0, got ${step}`);
    const values: SummaryValue[] = [];
    for (const [key, value] of Object.entries(metrics)) {
      checkMetricKey(key);
      if (typeof value !== 'number') throw new Error(`MetricsLogger.log: metric '${key}' is ${typeof value}, not a number`);
      values.push({ tag: key, simpleValue: value });
    }
    // JSON has no NaN/Infinity: they become null in metrics.jsonl (TensorBoard keeps the float).
    fs.writeSync(this.metricsFd, JSON.stringify({ step, ...metrics }) + '\n');
    this.writeEvent({ wallTime: this.now(), step, values });
  }

  /** Logs a text (e.g. a sample generation) at `step`: a line in samples.jsonl and a TensorBoard text summary. */
  logText(tag: string, text: string, step: number): void {
    this.checkOpen();
    if (!Number.isSafeInteger(step) || step < 0) throw new Error(`MetricsLogger.logText: step must be an integer >= 0, got ${step}`);
    this.samplesFd ??= fs.openSync(path.join(this.logDir, SAMPLES_FILE), 'a');
    fs.writeSync(this.samplesFd, JSON.stringify({ step, tag, text }) + '\n');
    this.writeEvent({ wallTime: this.now(), step, values: [{ tag, text }] });
  }

  /** Closes the files; further logging throws. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.metricsFd);
    fs.closeSync(this.eventsFd);
    if (this.samplesFd !== undefined) fs.closeSync(this.samplesFd);
  }

  private writeEvent(event: Parameters<typeof encodeEvent>[0]): void {
    fs.writeSync(this.eventsFd, frameRecord(encodeEvent(event)));
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`MetricsLogger: logging to ${this.logDir} after close()`);
  }
}

/** `file`, or `file.1`, `file.2`, ... when two loggers start in the same second in the same directory. */
function uniquePath(file: string): string {
  let candidate = file;
  for (let i = 1; fs.existsSync(candidate); i++) candidate = `${file}.${i}`;
  return candidate;
}

/**
 * Averages metrics between two logs, kept apart for training and evaluation (like TRL's reward trainer):
 * `add()` after every micro-batch, `log()` at each logging step returns the means and clears that mode.
 */
export class RunningMean {
  private readonly sums = { train: new Map<string, number>(), eval: new Map<string, number>() };
  private readonly counts = { train: new Map<string, number>(), eval: new Map<string, number>() };

  /** Accumulates one value per key (keys as logged in training, e.g. `train/loss`, `reward/accuracy`). */
  add(metrics: Record<string, number>, mode: 'train' | 'eval' = 'train'): void {
    for (const [key, value] of Object.entries(metrics)) {
      this.sums[mode].set(key, (this.sums[mode].get(key) ?? 0) + value);
      this.counts[mode].set(key, (this.counts[mode].get(key) ?? 0) + 1);
    }
  }

  /**
   * The mean of each key since the last `log(mode)`, then clears that mode. In eval mode keys get the `eval/`
   * prefix: a leading `train/` is replaced (`train/loss` -> `eval/loss`), any other key is prefixed
   * (`reward/accuracy` -> `eval/reward/accuracy`).
   */
  log(mode: 'train' | 'eval' = 'train'): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, sum] of this.sums[mode]) {
      const name = mode === 'eval' ? evalKey(key) : key;
      out[name] = sum / this.counts[mode].get(key)!;
    }
    this.sums[mode].clear();
    this.counts[mode].clear();
    return out;
  }
}

/** The evaluation name of a training metric key. */
export function evalKey(key: string): string {
  if (key.startsWith('eval/')) return key;
  return key.startsWith('train/') ? `eval/${key.slice('train/'.length)}` : `eval/${key}`;
}
