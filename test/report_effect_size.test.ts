import { describe, it, expect } from 'vitest';
import { pairedEffect, sampleStd } from '../src/report/effect_size.js';

describe('pairedEffect', () => {
  it('matches values worked by hand', () => {
    // differences 1, 2, 3, 2: mean 2, sd sqrt(2/3)
    const e = pairedEffect([0, 0, 1, 1], [1, 2, 4, 3]);
    expect(e.meanDiff).toBeCloseTo(2, 12);
    expect(e.effectSize).toBeCloseTo(2 / Math.sqrt(2 / 3), 12);
    expect(e.ci95[0]).toBeCloseTo(2 - (1.96 * Math.sqrt(2 / 3)) / 2, 12);
    expect([e.wins, e.ties, e.losses]).toEqual([4, 0, 0]);
    expect([e.meanA, e.meanB]).toEqual([0.5, 2.5]);
  });
  it('counts ties and losses; refuses lists of different lengths', () => {
    const e = pairedEffect([1, 2, 3], [1, 1, 5]);
    expect([e.wins, e.ties, e.losses]).toEqual([1, 1, 1]);
    expect(() => pairedEffect([1], [1, 2])).toThrow(/equally long/);
    expect(sampleStd([5])).toBe(0);
  });
});
