/**
 * Learning-rate schedules as pure functions of the optimizer step, following transformers' schedules
 * (`get_cosine_schedule_with_warmup`, `get_constant_schedule_with_warmup`): `step` is the number of optimizer steps
 * already taken, so the first update uses `step = 0` (and, with warm-up, an lr of 0, exactly as HF does; with
 * `warmupStart: 'one'` the warm-up is nanoGPT's, which never updates at lr 0: `warmupLr`).
 */

/**
 * How the linear warm-up counts (`--warmup_start`):
 * - `zero` (default, transformers' schedules): lr · step / w: the first update (step 0) is at lr 0, step w at the peak.
 * - `one` (nanoGPT's get_lr): lr · (step + 1) / (w + 1): counts the update being made, so the first is at lr / (w + 1)
 *   and no update is wasted at lr 0; step w is at the peak, as in `zero`.
 */
export const WARMUP_STARTS = ['zero', 'one'] as const;
export type WarmupStart = (typeof WARMUP_STARTS)[number];

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
  /** How the warm-up counts (default 'zero'). */
  warmupStart?: WarmupStart;
}

/** Settings of a warm-up + constant schedule. */
export interface ConstantScheduleConfig {
  /** Steps of linear warm-up from 0 to `maxLr`. */
  warmupSteps: number;
  /** Learning rate after warm-up. */
  maxLr: number;
  /** How the warm-up counts (default 'zero'). */
  warmupStart?: WarmupStart;
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
 * The lr at `step` of a linear warm-up (step < w) to `maxLr` (`WARMUP_STARTS`):
 * - zero: maxLr * step / w
 * - one:  maxLr * (step + 1) / (w + 1)
 */
export function warmupLr(step: number, warmupSteps: number, maxLr: number, start: WarmupStart = 'zero'): number {
  checkStep('warmupLr', step);
  checkWarmup('warmupLr', warmupSteps, maxLr);
  if (!(WARMUP_STARTS as readonly string[]).includes(start)) throw new Error(`warmupLr: start must be one of ${WARMUP_STARTS.join(', ')}, got ${String(start)}`);
  if (step >= warmupSteps) throw new Error(`warmupLr: step ${step} is past the ${warmupSteps} warm-up steps`);
  return start === 'one' ? (maxLr * (step + 1)) / (warmupSteps + 1) : (maxLr * step) / warmupSteps;
}

/**
 * 1. step < warmupSteps: `warmupLr` (maxLr * step / warmupSteps by default).
 * 2. afterwards: progress = (step - warmupSteps) / (totalSteps - warmupSteps), clamped to [0, 1];
 *    lr = minLr + (maxLr - minLr) * (1 + cos(pi * progress)) / 2.
 */
export function cosineWithWarmup(step: number, config: CosineScheduleConfig): number {
  const { totalSteps, warmupSteps, maxLr, minLr = 0, warmupStart } = config;
  checkStep('cosineWithWarmup', step);
  checkWarmup('cosineWithWarmup', warmupSteps, maxLr);
  if (!Number.isInteger(totalSteps) || totalSteps < 1 || totalSteps < warmupSteps) {
    throw new Error(`cosineWithWarmup: totalSteps must be an integer >= max(1, warmupSteps), got ${totalSteps}`);
  }
  if (!(minLr >= 0 && minLr <= maxLr)) throw new Error(`cosineWithWarmup: minLr must be in [0, maxLr], got ${minLr}`);
  if (step < warmupSteps) return warmupLr(step, warmupSteps, maxLr, warmupStart);
  const decaySteps = Math.max(1, totalSteps - warmupSteps);
  const progress = Math.min(1, (step - warmupSteps) / decaySteps);
  return minLr + ((maxLr - minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
}

/** Linear warm-up to `maxLr` over `warmupSteps` (`warmupLr`), then `maxLr`. */
export function constantWithWarmup(step: number, config: ConstantScheduleConfig): number {
  const { warmupSteps, maxLr } = config;
  checkStep('constantWithWarmup', step);
  checkWarmup('constantWithWarmup', warmupSteps, maxLr);
  return step < warmupSteps ? warmupLr(step, warmupSteps, maxLr, config.warmupStart) : maxLr;
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

/** `--lr_scheduler` names: transformers' `get_scheduler` names where they share one, and `noam`. */
export const LR_SCHEDULERS = ['cosine', 'linear', 'constant', 'constant_with_warmup', 'noam', 'cosine_with_min_lr'] as const;
export type LrSchedulerName = (typeof LR_SCHEDULERS)[number];

/** Settings of any `--lr_scheduler`; each schedule reads the fields it needs. */
export interface LrScheduleConfig {
  name: LrSchedulerName;
  /** Peak learning rate (`--lr`). */
  maxLr: number;
  warmupSteps: number;
  /** Optimizer steps in the whole run. */
  totalSteps: number;
  /**
   * Step at which the decay ends (`--decay_steps`, counted from step 0 like nanoGPT's lr_decay_iters and PaddleNLP's
   * decay_steps); afterwards the lr stays at its floor. Default: totalSteps.
   */
  decaySteps?: number;
  /** Floor of cosine_with_min_lr (`--min_lr`). */
  minLr?: number;
  /** How the warm-up of cosine, cosine_with_min_lr, linear and constant_with_warmup counts (`--warmup_start`). */
  warmupStart?: WarmupStart;
}

/**
 * transformers' `get_linear_schedule_with_warmup`:
 * 1. step < warmupSteps: `warmupLr` (maxLr * step / warmupSteps by default).
 * 2. afterwards: maxLr * max(0, (totalSteps - step) / (totalSteps - warmupSteps)), so 0 from totalSteps on.
 */
export function linearWithWarmup(step: number, config: { totalSteps: number; warmupSteps: number; maxLr: number; warmupStart?: WarmupStart }): number {
  const { totalSteps, warmupSteps, maxLr, warmupStart } = config;
  checkStep('linearWithWarmup', step);
  checkWarmup('linearWithWarmup', warmupSteps, maxLr);
  if (!Number.isInteger(totalSteps) || totalSteps < 1 || totalSteps < warmupSteps) {
    throw new Error(`linearWithWarmup: totalSteps must be an integer >= max(1, warmupSteps), got ${totalSteps}`);
  }
  if (step < warmupSteps) return warmupLr(step, warmupSteps, maxLr, warmupStart);
  return maxLr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}

/** transformers' `get_constant_schedule`: maxLr at every step (no warm-up). */
export function constantLr(step: number, config: { maxLr: number }): number {
  checkStep('constantLr', step);
  checkWarmup('constantLr', 0, config.maxLr);
  return config.maxLr;
}

/**
 * The Noam schedule ("Attention is all you need"; ModelScope's GPT-3 recipes): factor min(n^-0.5, n * w^-1.5) of the
 * 1-based update number n = step + 1. It rises linearly to n = w, then decays as 1/sqrt(n). The factor peaks at
 * w^-0.5, so it is multiplied by maxLr * sqrt(w): `--lr` is the peak, reached at the warmupSteps-th update (the
 * normalisation of ESPnet's and WeNet's WarmupLR; the paper's d_model^-0.5 scale would make --lr a unitless factor).
 * 1. n = step + 1
 * 2. lr = maxLr * sqrt(w) * min(n^-0.5, n * w^-1.5)
 */
export function noam(step: number, config: { warmupSteps: number; maxLr: number }): number {
  const { warmupSteps: w, maxLr } = config;
  checkStep('noam', step);
  checkWarmup('noam', w, maxLr);
  if (w < 1) throw new Error('noam: warmupSteps must be >= 1 (the schedule peaks there): set --warmup_steps or --warmup_ratio');
  const n = step + 1;
  return maxLr * Math.sqrt(w) * Math.min(n ** -0.5, n * w ** -1.5);
}

/** The lr of `config.name` at `step` (optimizer steps already taken: the first update uses step 0). */
export function scheduledLr(step: number, config: LrScheduleConfig): number {
  const { name, maxLr, warmupSteps, warmupStart } = config;
  const horizon = config.decaySteps ?? config.totalSteps;
  switch (name) {
    case 'cosine':
      return cosineWithWarmup(step, { totalSteps: horizon, warmupSteps, maxLr, minLr: 0, warmupStart });
    case 'cosine_with_min_lr':
      // transformers' min_lr: the cosine factor is rescaled to [min_lr / lr, 1], i.e. the lr to [min_lr, lr].
      return cosineWithWarmup(step, { totalSteps: horizon, warmupSteps, maxLr, minLr: config.minLr ?? 0, warmupStart });
    case 'linear':
      return linearWithWarmup(step, { totalSteps: horizon, warmupSteps, maxLr, warmupStart });
    case 'constant':
      return constantLr(step, { maxLr });
    case 'constant_with_warmup':
      return constantWithWarmup(step, { warmupSteps, maxLr, warmupStart });
    case 'noam':
      return noam(step, { warmupSteps, maxLr });
    default:
      throw new Error(`unknown --lr_scheduler ${String(name)} (choose one of: ${LR_SCHEDULERS.join(', ')})`);
  }
}

/**
 * Checks a schedule's settings once, before a run starts, with errors naming the flags (the functions above check
 * again, per call, naming their fields).
 */
export function validateLrSchedule(c: LrScheduleConfig): void {
  if (!(LR_SCHEDULERS as readonly string[]).includes(c.name)) {
    throw new Error(`--lr_scheduler ${c.name} is unknown (choose one of: ${LR_SCHEDULERS.join(', ')})`);
  }
  if (c.minLr !== undefined && c.name !== 'cosine_with_min_lr') {
    throw new Error(`--min_lr is the floor of --lr_scheduler cosine_with_min_lr; --lr_scheduler ${c.name} does not use it`);
  }
  if (c.name === 'cosine_with_min_lr' && c.minLr === undefined) throw new Error('--lr_scheduler cosine_with_min_lr needs --min_lr');
  if (c.minLr !== undefined && !(c.minLr >= 0 && c.minLr <= c.maxLr)) {
    throw new Error(`--min_lr must be in [0, --lr ${c.maxLr}], got ${c.minLr}`);
  }
  if (c.warmupStart !== undefined && !(WARMUP_STARTS as readonly string[]).includes(c.warmupStart)) {
    throw new Error(`--warmup_start ${c.warmupStart} is unknown (choose one of: ${WARMUP_STARTS.join(', ')})`);
  }
  if (c.warmupStart === 'one' && (c.name === 'noam' || c.name === 'constant')) {
    throw new Error(`--warmup_start one counts the linear warm-up of cosine, cosine_with_min_lr, linear and constant_with_warmup; --lr_scheduler ${c.name} has ${c.name === 'noam' ? 'its own rise' : 'no warm-up'}`);
  }
  if (c.name === 'noam' && c.warmupSteps < 1) {
    throw new Error('--lr_scheduler noam peaks at the end of warm-up: give --warmup_steps N (N >= 1) or a --warmup_ratio that makes one');
  }
  const decays = c.name === 'cosine' || c.name === 'cosine_with_min_lr' || c.name === 'linear';
  if (c.decaySteps !== undefined) {
    if (!decays) throw new Error(`--decay_steps sets where the decay of cosine, cosine_with_min_lr or linear ends; --lr_scheduler ${c.name} does not use it`);
    if (!Number.isInteger(c.decaySteps) || c.decaySteps < Math.max(1, c.warmupSteps)) {
      throw new Error(`--decay_steps must be an integer >= the ${c.warmupSteps} warm-up steps (and >= 1), got ${c.decaySteps}`);
    }
  }
  if (decays && c.decaySteps === undefined && c.totalSteps < c.warmupSteps) {
    throw new Error(`${c.warmupSteps} warm-up steps exceed the run's ${c.totalSteps} optimizer steps: lower --warmup_steps`);
  }
}

/** Warm-up steps from `--warmup_steps` when given (transformers: it overrides the ratio), else `--warmup_ratio`. */
export function resolveWarmupSteps(totalSteps: number, warmupSteps: number | undefined, warmupRatio: number): number {
  if (warmupSteps !== undefined) {
    if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new Error(`--warmup_steps must be an integer >= 0, got ${warmupSteps}`);
    return warmupSteps;
  }
  return warmupStepsFromRatio(totalSteps, warmupRatio);
}
