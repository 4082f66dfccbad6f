/** PPO's pure pieces against hand-computed values and finite differences. */
import { describe, it, expect, beforeAll } from 'vitest';
import { tf, type Tensor } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import {
  entropyFromLogits, gae, klK1, klK3, maskedMean, maskedVar, policyLoss, sequenceAdvantages, valueLoss, whiten,
} from '../src/ppo/functional.js';
import { AdaptiveKlController, FixedKlController } from '../src/ppo/kl_controller.js';
import { collate, ReplayBuffer } from '../src/ppo/replay_buffer.js';
import type { ExperienceItem } from '../src/ppo/experience.js';
import { Rng } from '../src/engine/rng.js';

beforeAll(async () => {
  await useTestBackend('cpu');
});

const num = (t: Tensor): number => t.dataSync()[0]!;
const arr = (t: Tensor): number[] => Array.from(t.dataSync());
const t2 = (x: number[][]) => tf.tensor2d(x);

describe('masked statistics', () => {
  it('mean, variance (with Bessel correction) and whitening ignore masked entries', () => {
    tf.tidy(() => {
      const x = t2([[1, 2, 100], [3, 4, -50]]);
      const m = t2([[1, 1, 0], [1, 1, 0]]);
      expect(num(maskedMean(x, m))).toBeCloseTo(2.5, 6);
      expect(arr(maskedMean(x, m, 1))).toEqual([1.5, 3.5]);
      // values 1..4: population variance 1.25, unbiased 5/3
      expect(num(maskedVar(x, m, false))).toBeCloseTo(1.25, 6);
      expect(num(maskedVar(x, m))).toBeCloseTo(5 / 3, 5);
      const w = arr(whiten(x, m));
      const s = Math.sqrt(5 / 3);
      expect(w[0]).toBeCloseTo(-1.5 / s, 4);
      expect(w[4]).toBeCloseTo(1.5 / s, 4);
      expect(Math.abs(w[2]!)).toBe(0);
      expect(Math.abs(w[5]!)).toBe(0);
      const kept = arr(whiten(x, m, false));
      expect(kept[0]).toBeCloseTo(-1.5 / s + 2.5, 4);
      expect(num(maskedMean(x, tf.zerosLike(m)))).toBe(0);
    });
  });
});

describe('GAE', () => {
  it('matches the recursion worked by hand, and stops at the mask', () => {
    // γ = 0.9, λ = 0.8; row 0 has 3 tokens, row 1 ends after 2 (third masked, with junk reward/value).
    const rewards = [[0.1, -0.2, 1.0], [0.5, 2.0, 9]];
    const values = [[0.5, 0.4, 0.3], [1.0, 0.2, 7]];
    const mask = [[1, 1, 1], [1, 1, 0]];
    const { advantages, returns } = gae(rewards, values, mask, 0.9, 0.8);
    // row 0: δ2 = 1 − 0.3 = 0.7; δ1 = −0.2 + 0.9·0.3 − 0.4 = −0.33; δ0 = 0.1 + 0.9·0.4 − 0.5 = −0.04
    //        A2 = 0.7; A1 = −0.33 + 0.72·0.7 = 0.174; A0 = −0.04 + 0.72·0.174 = 0.08528
    expect(advantages[0]![2]).toBeCloseTo(0.7, 10);
    expect(advantages[0]![1]).toBeCloseTo(0.174, 10);
    expect(advantages[0]![0]).toBeCloseTo(0.08528, 10);
    expect(returns[0]).toEqual(advantages[0]!.map((a, t) => a + values[0]![t]!));
    // row 1: δ1 = 2 − 0.2 = 1.8; δ0 = 0.5 + 0.9·0.2 − 1 = −0.32; A0 = −0.32 + 0.72·1.8 = 0.976
    expect(advantages[1]![1]).toBeCloseTo(1.8, 10);
    expect(advantages[1]![0]).toBeCloseTo(0.976, 10);
    expect(advantages[1]![2]).toBe(0);
    expect(returns[1]![2]).toBe(0);
  });

  it('with γ = λ = 1 the advantage is reward-to-go minus value', () => {
    const { advantages } = gae([[1, 2, 3]], [[0.5, 0.25, 0.125]], [[1, 1, 1]], 1, 1);
    expect(advantages[0]).toEqual([6 - 0.5, 5 - 0.25, 3 - 0.125]);
  });

  it("ColossalChat's sequence-level advantage is R − mean value over the answer", () => {
    const { advantages, returns } = sequenceAdvantages([1, -1], [[0.2, 0.4, 9], [0, 1, 2]], [[1, 1, 0], [1, 1, 1]]);
    expect(advantages[0]![0]).toBeCloseTo(0.7, 10);
    expect(advantages[0]![2]).toBe(0);
    expect(advantages[1]).toEqual([-2, -2, -2]);
    expect(returns).toEqual([[1, 1, 0], [-1, -1, -1]]);
  });
});

describe('KL estimators', () => {
  it('k1 = log p − log p_ref and k3 = (r − 1) − log r with r = p_ref / p, per their definitions', () => {
    const p = [0.5, 0.1, 0.9];
    const pRef = [0.25, 0.3, 0.9];
    tf.tidy(() => {
      const lp = tf.log(tf.tensor1d(p));
      const lr = tf.log(tf.tensor1d(pRef));
      const k1 = arr(klK1(lp, lr));
      const k3 = arr(klK3(lp, lr));
      p.forEach((pi, i) => {
        const r = pRef[i]! / pi;
        expect(k1[i]).toBeCloseTo(Math.log(pi) - Math.log(pRef[i]!), 5);
        expect(k3[i]).toBeCloseTo(r - 1 - Math.log(r), 5);
      });
      // The order matters: with p = 0.5, p_ref = 0.25, k3 = (0.5 − 1) − log 0.5 ≈ 0.193; the reversed ratio gives 0.307.
      expect(k3[0]).toBeCloseTo(-0.5 + Math.log(2), 5);
      expect(k3[2]).toBeCloseTo(0, 6);
    });
  });

  it('both estimate KL(p ‖ p_ref) when averaged over samples from p', () => {
    const p = [0.7, 0.2, 0.1];
    const q = [0.3, 0.3, 0.4];
    const exact = p.reduce((s, pi, i) => s + pi * Math.log(pi / q[i]!), 0);
    tf.tidy(() => {
      const lp = tf.log(tf.tensor1d(p));
      const lq = tf.log(tf.tensor1d(q));
      const w = tf.tensor1d(p);
      expect(num(tf.sum(tf.mul(w, klK1(lp, lq))))).toBeCloseTo(exact, 5);
      expect(num(tf.sum(tf.mul(w, klK3(lp, lq))))).toBeCloseTo(exact, 5);
    });
  });
});

describe('losses', () => {
  const logp = [[Math.log(0.5), Math.log(0.22), Math.log(0.3)]];
  const old = [[Math.log(0.4), Math.log(0.25), Math.log(0.3)]];
  const adv = [[1.0, -2.0, 0.5]];
  const mask = [[1, 1, 0]];

  it('clipped policy loss, clipfrac and approxkl by hand', () => {
    tf.tidy(() => {
      const out = policyLoss(t2(logp), t2(old), t2(adv), t2(mask), 0.2);
      // ρ0 = 1.25: max(−1.25, −1.2) = −1.2 (clipped); ρ1 = 0.88 (inside the range): 2·0.88 = 1.76
      expect(num(out.loss)).toBeCloseTo((-1.2 + 1.76) / 2, 5);
      expect(num(out.clipfrac)).toBeCloseTo(0.5, 6);
      const d0 = Math.log(0.5 / 0.4);
      const d1 = Math.log(0.22 / 0.25);
      expect(num(out.approxkl)).toBeCloseTo(0.5 * (d0 * d0 + d1 * d1) / 2, 6);
    });
  });

  it('policy-loss gradient matches finite differences and vanishes where clipped', () => {
    const f = (x: Tensor) => policyLoss(x, t2(old), t2(adv), t2(mask), 0.2).loss;
    const x = t2([[Math.log(0.42), Math.log(0.22), Math.log(0.3)]]);
    const g = arr(tf.grad(f)(x));
    const h = 1e-3;
    for (let j = 0; j < 3; j++) {
      const e = tf.tidy(() => tf.mul(tf.reshape(tf.oneHot(tf.tensor1d([j], 'int32'), 3), [1, 3]), h));
      const fd = (num(f(tf.add(x, e))) - num(f(tf.sub(x, e)))) / (2 * h);
      expect(g[j]).toBeCloseTo(fd, 3);
    }
    // token 0 inside the clip range: d/dlogp (−A·ρ)/2 = −A·ρ/2; token 2 is masked
    expect(g[0]).toBeCloseTo(-(0.42 / 0.4) / 2, 4);
    expect(Math.abs(g[2]!)).toBe(0);
    const clipped = arr(tf.grad(f)(t2(logp)));
    expect(Math.abs(clipped[0]!)).toBe(0);
  });

  it('clipped value loss and clipfrac by hand, with a finite-difference gradient', () => {
    const oldV = [[0.0, 1.0, 0.0]];
    const ret = [[1.0, 0.0, 5.0]];
    const v = [[0.5, 1.1, 3.0]];
    tf.tidy(() => {
      const out = valueLoss(t2(v), t2(oldV), t2(ret), t2(mask), 0.2);
      // token 0: V_clip = 0.2 → max(0.25, 0.64) = 0.64 (clipped wins); token 1: V_clip = 1.1 → 1.21 either way
      expect(num(out.loss)).toBeCloseTo(0.5 * (0.64 + 1.21) / 2, 5);
      expect(num(out.clipfrac)).toBeCloseTo(0.5, 6);
    });
    const f = (x: Tensor) => valueLoss(x, t2(oldV), t2(ret), t2(mask), 0.2).loss;
    const x = t2([[0.1, 0.7, 3.0]]);
    const g = arr(tf.grad(f)(x));
    const h = 1e-3;
    for (let j = 0; j < 2; j++) {
      const e = tf.tidy(() => tf.mul(tf.reshape(tf.oneHot(tf.tensor1d([j], 'int32'), 3), [1, 3]), h));
      const fd = (num(f(tf.add(x, e))) - num(f(tf.sub(x, e)))) / (2 * h);
      expect(g[j]).toBeCloseTo(fd, 3);
    }
    expect(g[0]).toBeCloseTo(0.5 * 2 * (0.1 - 1) / 2, 5);
  });

  it('entropy of a distribution from its logits', () => {
    tf.tidy(() => {
      const e = arr(entropyFromLogits(tf.tensor2d([[0, 0, 0, 0], [Math.log(0.5), Math.log(0.25), Math.log(0.25), -1e9]])));
      expect(e[0]).toBeCloseTo(Math.log(4), 5);
      expect(e[1]).toBeCloseTo(-(0.5 * Math.log(0.5) + 0.5 * Math.log(0.25)), 5);
    });
  });
});

describe('KL controller', () => {
  it('adapts β towards the target by the clipped proportional rule', () => {
    const c = new AdaptiveKlController(0.1, 6, 10000);
    c.update(9, 100); // error = min(0.2, 9/6 − 1 = 0.5) = 0.2 → β · (1 + 0.2·100/10000)
    expect(c.value).toBeCloseTo(0.1 * 1.002, 12);
    c.update(3, 1000); // error = −0.5 → −0.2 → × (1 − 0.02)
    expect(c.value).toBeCloseTo(0.1 * 1.002 * 0.98, 12);
    c.update(6, 1000);
    expect(c.value).toBeCloseTo(0.1 * 1.002 * 0.98, 12);
    const f = new FixedKlController(0.2);
    f.update();
    expect(f.value).toBe(0.2);
    const r = new AdaptiveKlController(1, 1, 1);
    r.restore(c.state());
    expect(r.value).toBe(c.value);
  });
});

describe('replay buffer', () => {
  const item = (prompt: number[], answer: number[], k: number): ExperienceItem => ({
    prompt, answer, logProbs: answer.map(() => -k), refLogProbs: answer.map(() => -k), values: answer.map(() => k),
    advantages: answer.map(() => k), returns: answer.map(() => k), score: k,
  });

  it('re-pads prompts on the left and answers on the right so answer token t sits at P + t', () => {
    const b = collate([item([5, 6, 7], [8], 1), item([9], [10, 11, 12], 2)], 0);
    expect(b.promptLength).toBe(3);
    expect(b.answerLength).toBe(3);
    expect(b.inputIds).toEqual([[5, 6, 7, 8, 0, 0], [0, 0, 9, 10, 11, 12]]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]]);
    expect(b.actionMask).toEqual([[1, 0, 0], [1, 1, 1]]);
    expect(b.values).toEqual([[1, 0, 0], [2, 2, 2]]);
  });

  it('serves every item once per pass, in a fresh order each pass', () => {
    const buf = new ReplayBuffer(0);
    buf.add(Array.from({ length: 10 }, (_, k) => item([1], [k + 2], k)));
    const rng = new Rng(3);
    const pass = () => buf.minibatches(4, rng).flatMap((b) => b.values.map((r) => r[0]!));
    const a = pass();
    const b = pass();
    expect([...a].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...b].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(a).not.toEqual(b);
    expect(buf.minibatches(4, rng).map((m) => m.inputIds.length)).toEqual([4, 4, 2]);
    buf.clear();
    expect(buf.size).toBe(0);
  });
});
