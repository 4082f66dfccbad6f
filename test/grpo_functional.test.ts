import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import { computeAdvantages, groupAdvantages, groupRewardStats } from '../src/grpo/advantages.js';
import { grpoLoss, LOSS_TYPES } from '../src/grpo/loss.js';
import { passAtK } from '../src/grpo/evaluate.js';
import { FIXTURES, relErr } from './helpers/fixtures.js';

interface LossRef { loss: number; grad_new_logps: number[][]; 'clip_ratio/low_mean': number; 'clip_ratio/high_mean': number; kl: number | null }
interface Fixture {
  num_generations: number; max_completion_length: number; epsilon_low: number; epsilon_high: number; beta: number; reinforce_pp_kl_coef: number;
  rewards: number[]; completion_mask: number[][]; old_logps: number[][]; new_logps: number[][]; ref_logps: number[][];
  advantages: { grpo: number[]; dr_grpo: number[]; batch_std: number[]; rloo: number[] };
  reinforce_pp_advantages: number[][]; reward_std: number; frac_reward_zero_std: number;
  losses: Record<string, LossRef>;
}
const f = JSON.parse(readFileSync(join(FIXTURES, 'grpo', 'expected.json'), 'utf8')) as Fixture;
const G = f.num_generations;
const TOL = 1e-5;

beforeAll(async () => {
  await useTestBackend('cpu');
});

describe('GRPO advantages against TRL 1.13 / OpenRLHF', () => {
  const seq = (rows: number[][]) => rows.map((r) => r[0]!); // every completion has ≥ 1 token, so column 0 holds it
  it('grpo (group mean/std), dr_grpo (mean only), batch-std scaling, rloo', () => {
    expect(relErr(seq(computeAdvantages('grpo', { rewards: f.rewards, G })), f.advantages.grpo)).toBeLessThan(TOL);
    expect(relErr(seq(computeAdvantages('dr_grpo', { rewards: f.rewards, G })), f.advantages.dr_grpo)).toBeLessThan(TOL);
    expect(relErr(groupAdvantages(f.rewards, G, 'batch'), f.advantages.batch_std)).toBeLessThan(TOL);
    expect(relErr(seq(computeAdvantages('rloo', { rewards: f.rewards, G })), f.advantages.rloo)).toBeLessThan(TOL);
    // the equal-reward group gets exactly 0: no signal, no NaN
    expect(computeAdvantages('grpo', { rewards: f.rewards, G }).slice(4, 8).flat().every((a) => a === 0)).toBe(true);
  });
  it('reinforce_pp: KL in the reward, returns, batch whitening; zero on masked tokens', () => {
    const a = computeAdvantages('reinforce_pp', { rewards: f.rewards, G, oldLogps: f.old_logps, refLogps: f.ref_logps, mask: f.completion_mask, klCoef: f.reinforce_pp_kl_coef });
    expect(relErr(a.flat(), f.reinforce_pp_advantages.flat())).toBeLessThan(TOL);
    expect(a[1]![4]).toBe(0);
    // β 0 (no reference): the rewards alone, on the last token, whitened; no log-probs needed
    const plain = computeAdvantages('reinforce_pp', { rewards: [1, 0], G: 1, mask: [[1, 1], [1, 0]] });
    expect(plain[0]![0]).toBeCloseTo(plain[0]![1]!, 6);
    expect(plain[0]![0]).toBeGreaterThan(0);
    expect(plain[1]![0]).toBeLessThan(0);
    expect(plain[1]![1]).toBe(0);
  });
  it('reward_std and frac_reward_zero_std', () => {
    const s = groupRewardStats(f.rewards, G);
    expect(Math.abs(s.rewardStd - f.reward_std) / f.reward_std).toBeLessThan(TOL);
    expect(s.fracZeroStd).toBeCloseTo(f.frac_reward_zero_std, 6);
    expect(s.zeroStd).toEqual([false, true, false]);
  });
});

describe('GRPO loss per loss_type, with and without the KL term, against TRL (values and gradients)', () => {
  for (const lossType of LOSS_TYPES) {
    for (const beta of [f.beta, 0]) {
      it(`${lossType}, beta ${beta}`, () => {
        const ref = f.losses[`${lossType}_beta${beta}`]!;
        const adv = tf.tensor2d(computeAdvantages('grpo', { rewards: f.rewards, G, mask: f.completion_mask }));
        const old = tf.tensor2d(f.old_logps);
        const refLogp = beta ? tf.tensor2d(f.ref_logps) : null;
        const mask = tf.tensor2d(f.completion_mask);
        const o = { lossType, epsilonLow: f.epsilon_low, epsilonHigh: f.epsilon_high, beta, maxCompletionLength: f.max_completion_length };
        const newLogp = tf.tensor2d(f.new_logps);
        const out = grpoLoss(newLogp, old, refLogp, adv, mask, o);
        expect(Math.abs(out.loss.dataSync()[0]! - ref.loss) / Math.abs(ref.loss)).toBeLessThan(TOL);
        expect(out.clipLow.dataSync()[0]).toBeCloseTo(ref['clip_ratio/low_mean'], 6);
        expect(out.clipHigh.dataSync()[0]).toBeCloseTo(ref['clip_ratio/high_mean'], 6);
        if (ref.kl === null) expect(out.kl).toBeNull();
        else expect(Math.abs(out.kl!.dataSync()[0]! - ref.kl) / ref.kl).toBeLessThan(TOL);
        const grad = tf.grad((x: tf.Tensor) => grpoLoss(x, old, refLogp, adv, mask, o).loss)(newLogp);
        expect(relErr(Array.from(grad.dataSync()), ref.grad_new_logps.flat())).toBeLessThan(TOL);
        // clip-higher is exercised: with ε_high = ε_low the same inputs give another loss
        const symmetric = grpoLoss(newLogp, old, refLogp, adv, mask, { ...o, epsilonHigh: f.epsilon_low }).loss.dataSync()[0]!;
        expect(Math.abs(symmetric - ref.loss)).toBeGreaterThan(1e-4 * Math.abs(ref.loss));
      });
    }
  }
});

describe('pass@k (Chen et al. 2021, unbiased)', () => {
  it('1 − C(n−c, k) / C(n, k)', () => {
    expect(passAtK(4, 1, 2)).toBeCloseTo(1 - 3 / 6, 12);
    expect(passAtK(8, 3, 4)).toBeCloseTo(1 - 5 / 70, 12); // C(5,4) / C(8,4)
    expect(passAtK(5, 0, 1)).toBe(0);
    expect(passAtK(5, 4, 2)).toBe(1); // fewer than k wrong: every draw of k holds a right one
    expect(passAtK(5, 2, 1)).toBeCloseTo(0.4, 12); // pass@1 is the share right
  });
});
