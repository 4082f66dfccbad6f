/**
 * Learning-rate schedules as pure functions of the optimizer step, following transformers' schedules
 * (`get_cosine_schedule_with_warmup`, `get_constant_schedule_with_warmup`): `step` is the number of optimizer steps
 * already taken, so the first update uses `step = 0` (and, with warm-up, an lr of 0, exactly as HF does).
 */

/** Settings of a warm-up + cosine decay schedule. */
export interface CosineScheduleConfig {
  /** Optimizer steps in the whole run (after the last, the lr stays at `minLr`). */
  totalSteps: number;
  /** Steps of linear warm-up from 0 to `maxLr`. */
  warmupSteps: number;
  /** Peak learning rate, reached at the end of warm-up. */
  maxLr: number;
  /** Floor the cosine decays to (default 0). */
  minLr?: number;
}

/** Settings of a warm-up + constant schedule. */
export interface ConstantScheduleConfig {
  /** Steps of linear warm-up from 0 to `maxLr`. */
  warmupSteps: number;
  /** Learning rate after warm-up. */
  maxLr: number;
}

function checkStep(fn: string, step: number): void {
  if (!Number.isInteger(step) || step < 0) throw new Error(`${fn}: step must be an integer >= 0, got ${step}`);
}

function checkWarmup(fn: string, warmupSteps: number, maxLr: number): void {
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
    throw new Error(`${fn}: warmupSteps must be an integer >= 0, got ${warmupSteps}`);
  }
  if (!(maxLr >= 0)) throw new Error(`${fn}: maxLr must be >= 0, got ${maxLr}`);
}

/**
 * 1. step < warmupSteps: maxLr * step / warmupSteps.
 * 2. afterwards: progress = (step - warmupSteps) / (totalSteps - warmupSteps), clamped to [0, 1];
 *    lr = minLr + (maxLr - minLr) * (1 + cos(pi * progress)) / 2.
 */
export function cosineWithWarmup(step: number, config: CosineScheduleConfig): number {
  const { totalSteps, warmupSteps, maxLr, minLr = 0 } = config;
  checkStep('cosineWithWarmup', step);
  checkWarmup('cosineWithWarmup', warmupSteps, maxLr);
  if (!Number.isInteger(totalSteps) || totalSteps < 1 || totalSteps < warmupSteps) {
    throw new Error(`cosineWithWarmup: totalSteps must be an integer >= max(1, warmupSteps), got ${totalSteps}`);
  }
  if (!(minLr >= 0 && minLr <= maxLr)) throw new Error(`cosineWithWarmup: minLr must be in [0, maxLr], got ${minLr}`);
  if (step < warmupSteps) return (maxLr * step) / warmupSteps;
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, (step - warmupSteps) / decaySteps);
  return minLr + ((maxLr - minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
}

/** Linear warm-up from 0 to `maxLr` over `warmupSteps`, then `maxLr`. */
export function constantWithWarmup(step: number, config: ConstantScheduleConfig): number {
  const { warmupSteps, maxLr } = config;
  checkStep('constantWithWarmup', step);
  checkWarmup('constantWithWarmup', warmupSteps, maxLr);
  return step < warmupSteps ? (maxLr * step) / warmupSteps : maxLr;
}

/**
 * Warm-up steps for a `--warmup_ratio` in [0, 1]: ceil(totalSteps * ratio) as in transformers' TrainingArguments,
 * except that float noise is rounded away first (100 * 0.07 = 7.000000000000001: transformers gives 8, this gives 7).
 */
export function warmupStepsFromRatio(totalSteps: number, ratio: number): number {
  if (!Number.isInteger(totalSteps) || totalSteps < 0) {
    throw new Error(`warmupStepsFromRatio: totalSteps must be an integer >= 0, got ${totalSteps}`);
  }
  if (!(ratio >= 0 && ratio <= 1)) throw new Error(`warmupStepsFromRatio: ratio must be in [0, 1], got ${ratio}`);
  return Math.ceil(Number((totalSteps * ratio).toFixed(9)));
}
