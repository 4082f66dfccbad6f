/**
 * The schedule and AdamW flags every stage shares (`--lr_scheduler`, `--warmup_steps`/`--warmup_ratio`, `--min_lr`,
 * `--decay_steps`, `--warmup_start`, `--adam_beta1/2`) → the fields of an `OptimizationConfig`, once the run's step count is known.
 */
import type { OptimizationConfig } from './optimization.js';
import { resolveWarmupSteps, validateLrSchedule, type LrSchedulerName, type WarmupStart } from './schedule.js';

export interface ScheduleFields {
  lr: number;
  lrScheduler: LrSchedulerName;
  /** Warm-up in optimizer steps; overrides warmupRatio. */
  warmupSteps?: number;
  warmupRatio: number;
  /** How the warm-up counts (`--warmup_start`; default 'zero', transformers' form). */
  warmupStart?: WarmupStart;
  minLr?: number;
  decaySteps?: number;
  adamBeta1: number;
  adamBeta2: number;
}

export const DEFAULT_SCHEDULE_FIELDS = { lrScheduler: 'cosine', adamBeta1: 0.9, adamBeta2: 0.999 } as const;

/** Checked schedule fields of `OptimizationConfig` for a run of `totalSteps` optimizer steps. */
export function scheduleFor(
  f: ScheduleFields, totalSteps: number,
): Pick<OptimizationConfig, 'schedule' | 'warmupSteps' | 'warmupStart' | 'totalSteps' | 'minLr' | 'decaySteps' | 'betas'> {
  const warmupSteps = resolveWarmupSteps(totalSteps, f.warmupSteps, f.warmupRatio);
  const name = f.lrScheduler ?? 'cosine';
  const warmupStart = f.warmupStart ?? 'zero';
  validateLrSchedule({ name, maxLr: f.lr, warmupSteps, totalSteps, decaySteps: f.decaySteps, minLr: f.minLr, warmupStart });
  for (const [flag, b] of [['--adam_beta1', f.adamBeta1 ?? 0.9], ['--adam_beta2', f.adamBeta2 ?? 0.999]] as const) {
    if (!(b >= 0 && b < 1)) throw new Error(`${flag} must be in [0, 1), got ${b}`);
  }
  return {
    // transformers' `constant` has no warm-up, whatever --warmup_ratio says
    schedule: name, warmupSteps: name === 'constant' ? 0 : warmupSteps, warmupStart, totalSteps, minLr: f.minLr, decaySteps: f.decaySteps,
    betas: [f.adamBeta1 ?? 0.9, f.adamBeta2 ?? 0.999],
  };
}
