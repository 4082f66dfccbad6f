import { describe, expect, it } from 'vitest';
import {
  constantLr, constantWithWarmup, cosineWithWarmup, linearWithWarmup, noam, resolveWarmupSteps, scheduledLr, validateLrSchedule,
  warmupLr, warmupStepsFromRatio, type LrScheduleConfig,
} from '../src/trainer/schedule.js';

describe('cosineWithWarmup', () => {
  const config = { totalSteps: 110, warmupSteps: 10, maxLr: 1e-3 };

  it('warms up linearly from 0', () => {
    expect(cosineWithWarmup(0, config)).toBe(0);
    expect(cosineWithWarmup(5, config)).toBeCloseTo(5e-4, 12);
    expect(cosineWithWarmup(9, config)).toBeCloseTo(9e-4, 12);
  });

  it('decays along half a cosine to minLr', () => {
    expect(cosineWithWarmup(10, config)).toBeCloseTo(1e-3, 12); // progress 0
    // progress 0.25: (1 + cos(pi/4)) / 2 = 0.8535534
    expect(cosineWithWarmup(35, config)).toBeCloseTo(8.535534e-4, 9);
    expect(cosineWithWarmup(60, config)).toBeCloseTo(5e-4, 12); // progress 0.5
    expect(cosineWithWarmup(110, config)).toBeCloseTo(0, 12);
    expect(cosineWithWarmup(500, config)).toBeCloseTo(0, 12); // past the end: stays at the floor
    const withFloor = { ...config, minLr: 1e-4 };
    // progress 0.5: 1e-4 + 9e-4 * 0.5
    expect(cosineWithWarmup(60, withFloor)).toBeCloseTo(5.5e-4, 12);
    expect(cosineWithWarmup(110, withFloor)).toBeCloseTo(1e-4, 12);
  });

  it('rejects bad settings, naming the field', () => {
    expect(() => cosineWithWarmup(-1, config)).toThrow(/step/);
    expect(() => cosineWithWarmup(0, { ...config, warmupSteps: 200 })).toThrow(/totalSteps/);
    expect(() => cosineWithWarmup(0, { ...config, minLr: 1 })).toThrow(/minLr/);
    expect(() => cosineWithWarmup(0, { ...config, warmupSteps: 1.5 })).toThrow(/warmupSteps/);
  });
});

describe('constantWithWarmup', () => {
  it('warms up linearly, then holds', () => {
    const config = { warmupSteps: 4, maxLr: 2e-5 };
    const expected = [0, 5e-6, 1e-5, 1.5e-5, 2e-5, 2e-5];
    [0, 1, 2, 3, 4, 100].forEach((s, i) => expect(constantWithWarmup(s, config)).toBeCloseTo(expected[i]!, 15));
    expect(constantWithWarmup(0, { warmupSteps: 0, maxLr: 2e-5 })).toBe(2e-5);
  });
});

describe('warmupLr: --warmup_start', () => {
  it('zero (transformers): lr·step/w; one (nanoGPT get_lr): lr·(step+1)/(w+1), worked by hand for w = 4, lr 1', () => {
    // zero: 0, 1/4, 2/4, 3/4; one: 1/5, 2/5, 3/5, 4/5
    [0, 0.25, 0.5, 0.75].forEach((lr, s) => expect(warmupLr(s, 4, 1)).toBeCloseTo(lr, 15));
    [0.2, 0.4, 0.6, 0.8].forEach((lr, s) => expect(warmupLr(s, 4, 1, 'one')).toBeCloseTo(lr, 15));
    expect(() => warmupLr(4, 4, 1, 'one')).toThrow(/step 4 is past the 4 warm-up steps/);
  });

  it('every warm-up schedule takes it; the peak is still at step w; nanoGPT shakespeare-char (w 100, 1e-3 → 1e-4 over 2000)', () => {
    const cfg = { name: 'cosine_with_min_lr' as const, maxLr: 1e-3, minLr: 1e-4, warmupSteps: 100, totalSteps: 2000, warmupStart: 'one' as const };
    expect(scheduledLr(0, cfg)).toBeCloseTo(1e-3 / 101, 15); // nanoGPT: 1e-3 * (0 + 1) / (100 + 1)
    expect(scheduledLr(99, cfg)).toBeCloseTo(1e-3 * 100 / 101, 15);
    expect(scheduledLr(100, cfg)).toBeCloseTo(1e-3, 15);
    expect(scheduledLr(1050, cfg)).toBeCloseTo(5.5e-4, 15); // decay ratio 950 / 1900 = 0.5
    expect(scheduledLr(0, { ...cfg, warmupStart: 'zero' })).toBe(0);
    expect(scheduledLr(1, { ...cfg, name: 'linear', minLr: undefined })).toBeCloseTo(2e-3 / 101, 15);
    expect(scheduledLr(2, { ...cfg, name: 'constant_with_warmup', minLr: undefined })).toBeCloseTo(3e-3 / 101, 15);
    expect(scheduledLr(3, { ...cfg, name: 'cosine', minLr: undefined })).toBeCloseTo(4e-3 / 101, 15);
  });

  it('noam and constant have no linear warm-up to count: an error naming the flag', () => {
    const v = (name: LrScheduleConfig['name']) => () => validateLrSchedule({ name, maxLr: 1, warmupSteps: 10, totalSteps: 100, warmupStart: 'one' });
    expect(v('noam')).toThrow(/--warmup_start one .* --lr_scheduler noam has its own rise/);
    expect(v('constant')).toThrow(/--lr_scheduler constant has no warm-up/);
    expect(v('cosine')).not.toThrow();
  });
});

describe('warmupStepsFromRatio', () => {
  it('rounds up, ignoring float noise', () => {
    expect(warmupStepsFromRatio(1000, 0.03)).toBe(30);
    expect(warmupStepsFromRatio(101, 0.1)).toBe(11); // 10.1 -> 11
    expect(warmupStepsFromRatio(100, 0.07)).toBe(7); // 7.000000000000001 -> 7
    expect(warmupStepsFromRatio(50, 0)).toBe(0);
    expect(() => warmupStepsFromRatio(50, 1.5)).toThrow(/ratio/);
  });
});


describe('linearWithWarmup (transformers get_linear_schedule_with_warmup)', () => {
  it('rises over the warm-up, then falls linearly to 0 at totalSteps', () => {
    const config = { totalSteps: 10, warmupSteps: 2, maxLr: 1 };
    // by hand: warm-up step/2; then (10 - step) / 8
    const expected: [number, number][] = [[0, 0], [1, 0.5], [2, 1], [6, 0.5], [9, 0.125], [10, 0], [12, 0]];
    for (const [s, lr] of expected) expect(linearWithWarmup(s, config)).toBeCloseTo(lr, 14);
  });
});

describe('constantLr', () => {
  it('is the peak at every step, warm-up or not', () => {
    for (const s of [0, 1, 1000]) expect(constantLr(s, { maxLr: 3e-4 })).toBe(3e-4);
  });
});

describe('noam', () => {
  it('lr * sqrt(w) * min(n^-0.5, n * w^-1.5), n = step + 1: peak --lr at the w-th update', () => {
    const config = { warmupSteps: 4, maxLr: 1 };
    // w = 4: sqrt(w) = 2, w^-1.5 = 1/8. n=1: 2 * 1/8; n=2: 2 * 2/8; n=4: 2 * min(1/2, 4/8) = 1; n=16: 2 * 16^-0.5
    const expected: [number, number][] = [[0, 0.25], [1, 0.5], [3, 1], [15, 0.5], [63, 0.25]];
    for (const [s, lr] of expected) expect(noam(s, config)).toBeCloseTo(lr, 14);
    expect(() => noam(0, { warmupSteps: 0, maxLr: 1 })).toThrow(/warmupSteps/);
  });
});

describe('scheduledLr: every --lr_scheduler', () => {
  const base = { maxLr: 1e-3, warmupSteps: 100, totalSteps: 5000 };
  const at = (name: LrScheduleConfig['name'], step: number, extra: Partial<LrScheduleConfig> = {}) => scheduledLr(step, { ...base, name, ...extra });

  it('cosine_with_min_lr is nanoGPT shakespeare-char schedule (1e-3 -> 1e-4 over 5000, warm-up 100)', () => {
    expect(at('cosine_with_min_lr', 50, { minLr: 1e-4 })).toBeCloseTo(5e-4, 15); // warm-up: 1e-3 * 50/100
    // progress (2550 - 100) / 4900 = 0.5: 1e-4 + 9e-4 * (1 + cos(pi/2)) / 2
    expect(at('cosine_with_min_lr', 2550, { minLr: 1e-4 })).toBeCloseTo(5.5e-4, 15);
    expect(at('cosine_with_min_lr', 5000, { minLr: 1e-4 })).toBeCloseTo(1e-4, 15);
    expect(at('cosine_with_min_lr', 7000, { minLr: 1e-4 })).toBeCloseTo(1e-4, 15);
  });

  it('--decay_steps ends the decay early, then holds the floor', () => {
    // cosine with decay over 2100 steps: progress at 1100 is 0.5
    expect(at('cosine', 1100, { decaySteps: 2100 })).toBeCloseTo(5e-4, 15);
    expect(at('cosine', 3000, { decaySteps: 2100 })).toBe(0);
    expect(at('linear', 1100, { decaySteps: 2100 })).toBeCloseTo(5e-4, 15);
    expect(at('cosine', 1100)).toBeCloseTo(1e-3 * (1 + Math.cos(Math.PI * (1000 / 4900))) / 2, 15);
  });

  it('constant ignores the warm-up; constant_with_warmup and noam use it', () => {
    expect(at('constant', 0)).toBe(1e-3);
    expect(at('constant_with_warmup', 25)).toBeCloseTo(2.5e-4, 15);
    expect(at('noam', 99)).toBeCloseTo(1e-3, 15);
    expect(at('noam', 399)).toBeCloseTo(5e-4, 15); // n = 400 = 4w: 1/sqrt(4)
  });

  it('rejects settings a schedule cannot use, naming the flags', () => {
    const v = (extra: Partial<LrScheduleConfig>) => () => validateLrSchedule({ ...base, name: 'cosine', ...extra });
    expect(v({ minLr: 1e-4 })).toThrow(/--min_lr.*cosine_with_min_lr/);
    expect(v({ name: 'cosine_with_min_lr' })).toThrow(/needs --min_lr/);
    expect(v({ name: 'cosine_with_min_lr', minLr: 1 })).toThrow(/--min_lr must be in/);
    expect(v({ name: 'noam', warmupSteps: 0 })).toThrow(/noam.*--warmup_steps/);
    expect(v({ name: 'constant', decaySteps: 10 })).toThrow(/--decay_steps/);
    expect(v({ decaySteps: 50 })).toThrow(/--decay_steps must be/);
    expect(v({ name: 'nope' as LrScheduleConfig['name'] })).toThrow(/--lr_scheduler nope/);
    expect(v({ decaySteps: 3000 })).not.toThrow();
  });

  it('--warmup_steps overrides --warmup_ratio', () => {
    expect(resolveWarmupSteps(1000, 7, 0.5)).toBe(7);
    expect(resolveWarmupSteps(1000, undefined, 0.05)).toBe(50);
  });
});

describe('scheduleFor: the flags → Optimization fields', () => {
  it('resolves the warm-up, keeps HF constant without one, and checks the flags', async () => {
    const { scheduleFor } = await import('../src/trainer/schedule_config.js');
    const f = { lr: 1e-3, lrScheduler: 'cosine_with_min_lr' as const, warmupRatio: 0.03, minLr: 1e-4, adamBeta1: 0.9, adamBeta2: 0.99 };
    expect(scheduleFor(f, 1000)).toEqual({ schedule: 'cosine_with_min_lr', warmupSteps: 30, warmupStart: 'zero', totalSteps: 1000, minLr: 1e-4, decaySteps: undefined, betas: [0.9, 0.99] });
    expect(scheduleFor({ ...f, warmupStart: 'one' }, 1000).warmupStart).toBe('one');
    expect(scheduleFor({ ...f, warmupSteps: 100 }, 1000).warmupSteps).toBe(100);
    expect(scheduleFor({ ...f, lrScheduler: 'constant', minLr: undefined }, 1000).warmupSteps).toBe(0);
    expect(() => scheduleFor({ ...f, adamBeta2: 1 }, 1000)).toThrow(/--adam_beta2/);
    expect(() => scheduleFor({ ...f, lrScheduler: 'noam', minLr: undefined, warmupRatio: 0 }, 1000)).toThrow(/noam/);
  });
});
