import { describe, expect, it } from 'vitest';
import { constantWithWarmup, cosineWithWarmup, warmupStepsFromRatio } from '../src/trainer/schedule.js';

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

describe('warmupStepsFromRatio', () => {
  it('rounds up, ignoring float noise', () => {
    expect(warmupStepsFromRatio(1000, 0.03)).toBe(30);
    expect(warmupStepsFromRatio(101, 0.1)).toBe(11); // 10.1 -> 11
    expect(warmupStepsFromRatio(100, 0.07)).toBe(7); // 7.000000000000001 -> 7
    expect(warmupStepsFromRatio(50, 0)).toBe(0);
    expect(() => warmupStepsFromRatio(50, 1.5)).toThrow(/ratio/);
  });
});
