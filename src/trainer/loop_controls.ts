/**
 * The controls every stage's loop shares (transformers' TrainingArguments names): a step budget (`--max_steps`),
 * when to evaluate (`--eval_steps`), log (`--logging_steps`) and checkpoint (`--save_steps`), how many checkpoints to
 * keep (`--save_total_limit`) and the best one (`--save_best`, `--metric_for_best`, `--greater_is_better`).
 *
 * A stage adopts them in a few lines:
 *   const controls = new LoopControls(config, { savePath, totalSteps, resumeDir, evalMetrics: ['eval/loss', ...], log });
 *   if (controls.evalDue(step, epochEnded)) { const m = evaluate(); await controls.recordEval(step, m, (dir) => save(dir)); }
 *   if (controls.logDue(step)) logger.log(step, metrics);
 *   if (controls.saveDue(step)) { await save(checkpointDir(step)); controls.afterCheckpoint(); }
 * and keeps `controls.bestState()` in its trainer_state.json (`restoreBest` on --resume).
 */
import { join } from 'node:path';
import { pruneCheckpoints } from './checkpoint_pruning.js';

/** The flags, as config fields (camelCase of the flag names). */
export interface LoopControlsConfig {
  /** Optimizer steps of the run, overriding the epochs (`--max_steps`). */
  maxSteps?: number;
  /** Evaluate every n steps and at the end (0: the stage's default, e.g. at epoch ends). */
  evalSteps: number;
  /** Log training metrics every n steps (and at the last). */
  loggingSteps: number;
  /** Checkpoint every n steps (0: only the final save). */
  saveSteps: number;
  /** Keep at most this many checkpoint-<step> directories (0: all). */
  saveTotalLimit: number;
  /** Keep the model of the best evaluation in <save_path>/best. */
  saveBest: boolean;
  /** Metric that ranks evaluations (default eval/loss); "accuracy" means "eval/accuracy" when the stage logs that. */
  metricForBest?: string;
  /** Whether a larger metric is better (default: false for losses and perplexities, true otherwise). */
  greaterIsBetter?: boolean;
}

export const DEFAULT_LOOP_CONTROLS: LoopControlsConfig = { evalSteps: 0, loggingSteps: 1, saveSteps: 0, saveTotalLimit: 0, saveBest: false };

/** The run's optimizer steps: `--max_steps` when given, else what the epochs make. */
export function totalStepsFor(maxSteps: number | undefined, stepsFromEpochs: number): number {
  if (maxSteps === undefined) return stepsFromEpochs;
  if (!Number.isInteger(maxSteps) || maxSteps < 1) throw new Error(`--max_steps must be an integer >= 1, got ${maxSteps}`);
  return maxSteps;
}

/** Epochs a loop must be ready to run for `totalSteps` steps of `stepsPerEpoch` each. */
export function epochsFor(totalSteps: number, stepsPerEpoch: number): number {
  return Math.ceil(totalSteps / Math.max(1, stepsPerEpoch));
}

/** Every `every` steps, and at the last step (`every` 0: never by count). */
export function dueEvery(step: number, every: number, totalSteps: number): boolean {
  return every > 0 && (step % every === 0 || step === totalSteps);
}

/** transformers' rule: larger is better unless the metric is a loss; perplexities too are lower-is-better. */
export function inferGreaterIsBetter(metric: string): boolean {
  const leaf = metric.split('/').pop()!.toLowerCase();
  return !(leaf.includes('loss') || leaf.includes('perplexity'));
}

/** The metric's key among the evaluated ones: exact, else with "eval/" in front (transformers adds "eval_"). */
export function resolveMetricName(metric: string, known: readonly string[], stage: string): string {
  if (known.includes(metric)) return metric;
  if (known.includes(`eval/${metric}`)) return `eval/${metric}`;
  throw new Error(`--metric_for_best ${metric}: ${stage} does not compute it (it computes: ${known.join(', ')})`);
}

/** Best so far by one metric; which step gave it. */
export class BestTracker {
  value: number | null = null;
  step: number | null = null;
  constructor(readonly metric: string, readonly greaterIsBetter: boolean) {}

  /** Whether `value` beats the best so far (a non-finite value never does). */
  isBetter(value: number): boolean {
    if (!Number.isFinite(value)) return false;
    if (this.value === null) return true;
    return this.greaterIsBetter ? value > this.value : value < this.value;
  }

  /** Records the evaluation at `step`; true when it is the new best. */
  offer(step: number, metrics: Record<string, number>): boolean {
    const v = metrics[this.metric];
    if (v === undefined) throw new Error(`--metric_for_best ${this.metric}: not among this evaluation's metrics (${Object.keys(metrics).join(', ')})`);
    if (!this.isBetter(v)) return false;
    this.value = v;
    this.step = step;
    return true;
  }
}

/** What trainer_state.json keeps of the best evaluation (transformers: best_metric, best_model_checkpoint). */
export interface BestState {
  best_metric: number | null;
  best_step?: number | null;
  best_model_checkpoint?: string | null;
}

export interface LoopControlsContext {
  savePath: string;
  totalSteps: number;
  /** The checkpoint this run resumed from (never pruned). */
  resumeDir?: string;
  /** Keys the stage's evaluation returns (to check --metric_for_best up front); empty: the stage has no evaluation. */
  evalMetrics: readonly string[];
  /** Command name for messages (train_sft, ...). */
  stage: string;
  /** Why there is no evaluation, when evalMetrics is empty (--eval_steps and --save_best then fail with it). */
  noEval?: string;
  log: (message: string) => void;
}

export class LoopControls {
  readonly best: BestTracker;
  readonly bestDir: string;

  constructor(readonly config: LoopControlsConfig, readonly ctx: LoopControlsContext) {
    const c = config;
    for (const [flag, v] of [['--eval_steps', c.evalSteps], ['--logging_steps', c.loggingSteps], ['--save_steps', c.saveSteps], ['--save_total_limit', c.saveTotalLimit]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new Error(`${flag} must be an integer >= 0, got ${v}`);
    }
    if (c.loggingSteps < 1) throw new Error(`--logging_steps must be an integer >= 1, got ${c.loggingSteps}`);
    if (!ctx.evalMetrics.length) {
      const why = ctx.noEval ?? `${ctx.stage} has no evaluation`;
      if (c.evalSteps > 0) throw new Error(`--eval_steps ${c.evalSteps}: ${why}`);
      if (c.saveBest) throw new Error(`--save_best ranks evaluations, but ${why}`);
    }
    const metric = ctx.evalMetrics.length ? resolveMetricName(c.metricForBest ?? 'eval/loss', ctx.evalMetrics, ctx.stage) : (c.metricForBest ?? 'eval/loss');
    this.best = new BestTracker(metric, c.greaterIsBetter ?? inferGreaterIsBetter(metric));
    this.bestDir = join(ctx.savePath, 'best');
  }

  /** Evaluate after `step`? Every --eval_steps and at the end; without --eval_steps, where the stage evaluated before. */
  evalDue(step: number, stageDefault: boolean): boolean {
    return this.config.evalSteps > 0 ? dueEvery(step, this.config.evalSteps, this.ctx.totalSteps) : stageDefault || step === this.ctx.totalSteps;
  }

  logDue(step: number): boolean {
    return dueEvery(step, this.config.loggingSteps, this.ctx.totalSteps);
  }

  /** A periodic checkpoint after `step` (the last step's model is the final save, not a checkpoint). */
  saveDue(step: number): boolean {
    return this.config.saveSteps > 0 && step % this.config.saveSteps === 0 && step < this.ctx.totalSteps;
  }

  /** Directory of the checkpoint after `step`. */
  checkpointDir(step: number): string {
    return join(this.ctx.savePath, `checkpoint-${step}`);
  }

  /**
   * Records an evaluation; with --save_best, a new best is written to <save_path>/best by `writeBest` (the stage's
   * resumable checkpoint writer). Returns whether it was the best so far.
   */
  async recordEval(step: number, metrics: Record<string, number>, writeBest: (dir: string) => Promise<void>): Promise<boolean> {
    if (!this.best.offer(step, metrics)) return false;
    if (this.config.saveBest) {
      await writeBest(this.bestDir);
      this.ctx.log(`best ${this.best.metric} ${this.best.value!.toFixed(4)} at step ${step}: saved ${this.bestDir}`);
    }
    return true;
  }

  /** After a periodic checkpoint: prune down to --save_total_limit (keeping the best step's and the resumed one). */
  afterCheckpoint(): string[] {
    if (this.config.saveTotalLimit === 0) return [];
    const protect = [this.ctx.resumeDir, this.best.step !== null ? this.checkpointDir(this.best.step) : undefined].filter((d): d is string => !!d);
    return pruneCheckpoints(this.ctx.savePath, this.config.saveTotalLimit, protect);
  }

  bestState(): BestState {
    return {
      best_metric: this.best.value, best_step: this.best.step,
      best_model_checkpoint: this.config.saveBest && this.best.step !== null ? this.bestDir : null,
    };
  }

  /** Takes the best so far from a resumed checkpoint's trainer_state.json. */
  restoreBest(s: BestState): void {
    // A checkpoint without best_step predates these controls; its best_metric may rank by another metric.
    if (s.best_step === undefined || s.best_step === null) return;
    this.best.value = s.best_metric ?? null;
    this.best.step = s.best_step ?? null;
  }

  /** One line for the end of a run: `best val loss <x> at step <n>` style. */
  bestSummary(): string | null {
    if (this.best.value === null) return null;
    return `best ${this.best.metric} ${this.best.value.toFixed(4)} at step ${this.best.step}`;
  }
}
