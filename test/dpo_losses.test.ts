/**
 * The preference losses against TRL's values on the fixtures' log-probs (test/fixtures/hf/<family>/dpo), every loss
 * type within 1e-5, the four reward metrics, and KTO against a hand computation of TRL's formula.
 */
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { DPO_LOSS_DEFAULTS, ktoLoss, needsReference, pairLoss, rewardMetrics, type DpoLossType } from '../src/dpo/losses.js';
import { FIXTURES } from './helpers/fixtures.js';

interface DpoExpected {
  beta: number; label_smoothing: number; simpo_beta: number; simpo_gamma: number; orpo_lambda: number;
  logps: { policy_chosen: number[]; policy_rejected: number[]; ref_chosen: number[]; ref_rejected: number[]; chosen_tokens: number[]; rejected_tokens: number[] };
  losses: Record<string, number>;
  metrics: Record<string, number>;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe.each(['gpt2', 'llama', 'qwen2'])('%s: losses on the fixture log-probs', (family) => {
  const e = JSON.parse(readFileSync(join(FIXTURES, 'hf', family, 'dpo', 'expected.json'), 'utf8')) as DpoExpected;
  const lp = () => ({
    policyChosen: tf.tensor1d(e.logps.policy_chosen), policyRejected: tf.tensor1d(e.logps.policy_rejected),
    chosenTokens: tf.tensor1d(e.logps.chosen_tokens), rejectedTokens: tf.tensor1d(e.logps.rejected_tokens),
    refChosen: tf.tensor1d(e.logps.ref_chosen), refRejected: tf.tensor1d(e.logps.ref_rejected),
  });
  const base = { ...DPO_LOSS_DEFAULTS, beta: e.beta, simpoGamma: e.simpo_gamma, orpoLambda: e.orpo_lambda };
  const cases: [string, Exclude<DpoLossType, 'kto'>, Partial<typeof base>][] = [
    ['sigmoid', 'sigmoid', {}],
    ['hinge', 'hinge', {}],
    ['ipo', 'ipo', {}],
    ['robust', 'robust', { labelSmoothing: e.label_smoothing }],
    ['sigmoid_label_smoothing', 'sigmoid', { labelSmoothing: e.label_smoothing }],
    ['simpo', 'simpo', { beta: e.simpo_beta }],
    ['orpo', 'orpo', {}],
  ];
  it.each(cases)('%s within 1e-5', (key, type, over) => {
    const inputs = lp();
    // reference-free losses must not need the reference
    if (!needsReference(type)) {
      delete (inputs as Partial<typeof inputs>).refChosen;
      delete (inputs as Partial<typeof inputs>).refRejected;
    }
    const out = pairLoss(type, inputs, { ...base, ...over });
    expect(rel(out.loss.dataSync()[0]!, e.losses[key]!)).toBeLessThan(1e-5);
    if (type === 'orpo') {
      // the logged terms: the token-mean NLL of the chosen answers and the mean log σ(log odds ratio)
      const nll = -(e.logps.policy_chosen[0]! + e.logps.policy_chosen[1]!) / (e.logps.chosen_tokens[0]! + e.logps.chosen_tokens[1]!);
      expect(rel(out.terms!['loss/nll']!.dataSync()[0]!, nll)).toBeLessThan(1e-6);
      expect(rel(nll - e.orpo_lambda * out.terms!['loss/log_odds_ratio']!.dataSync()[0]!, e.losses.orpo!)).toBeLessThan(1e-5);
    }
    tf.dispose([out.loss, out.chosenRewards, out.rejectedRewards, ...Object.values(inputs), ...Object.values(out.terms ?? {})]);
  });

  it("TRL's four reward metrics of DPO", () => {
    const inputs = lp();
    const out = pairLoss('sigmoid', inputs, base);
    const m = rewardMetrics(out.chosenRewards, out.rejectedRewards);
    for (const k of ['rewards/chosen', 'rewards/rejected', 'rewards/margins'] as const) expect(rel(m[k].dataSync()[0]!, e.metrics[k]!)).toBeLessThan(1e-5);
    expect(m['rewards/accuracies'].dataSync()[0]).toBe(e.metrics['rewards/accuracies']);
    tf.dispose([out.loss, out.chosenRewards, out.rejectedRewards, ...Object.values(inputs), ...Object.values(m)]);
  });
});

describe('kto', () => {
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const policy = [-12.5, -30.25, -8, -20];
  const ref = [-13, -29, -8.5, -19];
  const desirable = [true, false, true, false];
  const policyKl = [-40, -35, -50, -45];
  const refKl = [-41, -35.5, -50.25, -45];
  const p = { ...DPO_LOSS_DEFAULTS, beta: 0.2, desirableWeight: 1.5, undesirableWeight: 0.5 };

  it("matches TRL's formula (KL estimate, weights, mean over all examples)", () => {
    const z0 = Math.max(0, policyKl.reduce((s, x, i) => s + x - refKl[i]!, 0) / 4);
    const want = policy.reduce((s, x, i) => {
      const r = x - ref[i]!;
      return s + (desirable[i] ? 1.5 * (1 - sig(0.2 * (r - z0))) : 0.5 * (1 - sig(0.2 * (z0 - r))));
    }, 0) / 4;
    const out = ktoLoss({ policy: tf.tensor1d(policy), ref: tf.tensor1d(ref), desirable, policyKl: tf.tensor1d(policyKl), refKl: tf.tensor1d(refKl) }, p);
    expect(rel(out.loss.dataSync()[0]!, want)).toBeLessThan(1e-6);
    expect(out.kl.dataSync()[0]).toBeCloseTo(z0, 6);
    const chosen = Array.from(out.chosenRewards.dataSync());
    [0.5 * 0.2, 0.5 * 0.2].forEach((r, i) => expect(chosen[i]).toBeCloseTo(r, 6));
    expect(out.rejectedRewards.shape).toEqual([2]);
  });

  it('the gradient treats the KL estimate as a constant; z₀ is clamped at 0', () => {
    const z0 = 0.4375; // mean(π_KL − ρ_KL) = (1 + 0.5 + 0.25 + 0) / 4
    const g = tf.grad((x: tf.Tensor) => ktoLoss({ policy: x, ref: tf.tensor1d(ref), desirable, policyKl: tf.tensor1d(policyKl), refKl: tf.tensor1d(refKl) }, p).loss)(tf.tensor1d(policy));
    // d/dπ of w(1 − σ(sβ(π − ρ − z₀)))/M = −w·s·β·σ'(·)/M
    const want = policy.map((x, i) => {
      const s = desirable[i] ? 1 : -1;
      const u = s * 0.2 * (x - ref[i]! - z0);
      return (-(desirable[i] ? 1.5 : 0.5) * s * 0.2 * sig(u) * (1 - sig(u))) / 4;
    });
    Array.from(g.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 7));
    const out = ktoLoss({ policy: tf.tensor1d(policy), ref: tf.tensor1d(ref), desirable, policyKl: tf.tensor1d(refKl.map((v) => v - 1)), refKl: tf.tensor1d(refKl) }, p);
    expect(out.kl.dataSync()[0]).toBe(0);
  });
});
