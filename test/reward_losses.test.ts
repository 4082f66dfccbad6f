/**
 * The two pairwise reward losses: values against hand-computed numbers, gradients against central finite
 * differences of the tf implementation itself, large margins (no overflow, no lost gradient), ties, and the batch
 * metrics.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import { logExpLoss, logSigLoss, pairMetrics, pairwiseLoss, PAIRWISE_LOSSES, type PairwiseLoss } from '../src/reward/losses.js';

beforeAll(async () => {
  await useTestBackend('cpu');
});

const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

function lossValue(fn: PairwiseLoss, chosen: number[], rejected: number[]): number {
  return tf.tidy(() => fn(tf.tensor1d(chosen), tf.tensor1d(rejected)).dataSync()[0]!);
}

/** Analytic gradients from tf: d loss / d chosen, d loss / d rejected. */
function grads(fn: PairwiseLoss, chosen: number[], rejected: number[]): { dc: number[]; dr: number[] } {
  return tf.tidy(() => {
    const g = tf.grads((c: tf.Tensor, r: tf.Tensor) => fn(c, r));
    const [dc, dr] = g([tf.tensor1d(chosen), tf.tensor1d(rejected)]);
    return { dc: Array.from(dc!.dataSync()), dr: Array.from(dr!.dataSync()) };
  });
}

/** Central differences of the loss as tf computes it (float32: h = 1e-2 keeps rounding error ~1e-5). */
function finiteDiff(fn: PairwiseLoss, chosen: number[], rejected: number[], h = 1e-2): { dc: number[]; dr: number[] } {
  const d = (which: 'c' | 'r', i: number) => {
    const bump = (s: number) => {
      const c = [...chosen];
      const r = [...rejected];
      (which === 'c' ? c : r)[i]! += s;
      return lossValue(fn, c, r);
    };
    return (bump(h) - bump(-h)) / (2 * h);
  };
  return { dc: chosen.map((_, i) => d('c', i)), dr: rejected.map((_, i) => d('r', i)) };
}

describe.each(PAIRWISE_LOSSES)('%s loss', (name) => {
  const fn = pairwiseLoss(name);
  const chosen = [1.5, -0.3, 0.2, 2.0];
  const rejected = [0.5, 0.4, 0.2, -1.0];

  it('equals mean(log(1 + exp(r_rejected − r_chosen))) computed by hand', () => {
    const expected = chosen.reduce((s, c, i) => s + Math.log(1 + Math.exp(rejected[i]! - c)), 0) / chosen.length;
    expect(lossValue(fn, chosen, rejected)).toBeCloseTo(expected, 6);
    // a single pair: −log σ(1) = log(1 + e^−1)
    expect(lossValue(fn, [1], [0])).toBeCloseTo(Math.log(1 + Math.exp(-1)), 6);
    expect(lossValue(fn, [0], [0])).toBeCloseTo(Math.LN2, 6);
  });

  it('gradients match finite differences', () => {
    const g = grads(fn, chosen, rejected);
    const fd = finiteDiff(fn, chosen, rejected);
    for (let i = 0; i < chosen.length; i++) {
      expect(g.dc[i]!).toBeCloseTo(fd.dc[i]!, 4);
      expect(g.dr[i]!).toBeCloseTo(fd.dr[i]!, 4);
    }
    // and the closed form: d/dc = −σ(r − c)/B, d/dr = +σ(r − c)/B
    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    chosen.forEach((c, i) => {
      expect(g.dc[i]!).toBeCloseTo(-sig(rejected[i]! - c) / chosen.length, 6);
      expect(g.dr[i]!).toBeCloseTo(sig(rejected[i]! - c) / chosen.length, 6);
    });
  });

  it('a tie has gradient ∓½ per pair (not 0 or 1 from the kinks of max/abs)', () => {
    const g = grads(fn, [0.7], [0.7]);
    expect(g.dc[0]!).toBeCloseTo(-0.5, 6);
    expect(g.dr[0]!).toBeCloseTo(0.5, 6);
  });

  it('large margins neither overflow nor lose the gradient', () => {
    // wrong by 200: loss ≈ 200 (exp(200) overflows float32), gradient −1 on chosen
    expect(lossValue(fn, [-100], [100])).toBeCloseTo(200, 3);
    expect(grads(fn, [-100], [100]).dc[0]!).toBeCloseTo(-1, 6);
    // right by 200: loss ≈ 0, gradient ≈ 0, both finite
    const v = lossValue(fn, [100], [-100]);
    expect(Number.isFinite(v) && v >= 0 && v < 1e-6).toBe(true);
    expect(Math.abs(grads(fn, [100], [-100]).dc[0]!)).toBeLessThan(1e-6);
  });

  it('rejects mismatched shapes with a message naming the op', () => {
    expect(() => tf.tidy(() => fn(tf.tensor1d([1, 2]), tf.tensor1d([1])))).toThrow(/chosen and rejected rewards must both be \[B\]/);
  });
});

describe('the two losses', () => {
  it('agree everywhere (they are the same function written two ways)', () => {
    const c = Array.from({ length: 41 }, (_, i) => (i - 20) * 1.7);
    const r = c.map((x, i) => Math.sin(i) * 5 - x / 3);
    c.forEach((x, i) => {
      const a = lossValue(logSigLoss, [x], [r[i]!]);
      const b = lossValue(logExpLoss, [x], [r[i]!]);
      expect(a).toBeCloseTo(softplus(r[i]! - x), 4);
      expect(Math.abs(a - b)).toBeLessThan(1e-4 * Math.max(1, a));
    });
  });

  it('an unknown name is an error listing the choices', () => {
    expect(() => pairwiseLoss('hinge' as never)).toThrow(/log_sig, log_exp/);
  });
});

describe('pairMetrics', () => {
  it('accuracy counts strict wins; means and margin', () => {
    const m = tf.tidy(() => {
      const r = pairMetrics(tf.tensor1d([1, 2, 0, 3]), tf.tensor1d([0, 3, 0, 1]));
      return { accuracy: r.accuracy.dataSync()[0]!, chosen: r.chosen.dataSync()[0]!, rejected: r.rejected.dataSync()[0]!, margin: r.margin.dataSync()[0]! };
    });
    expect(m.accuracy).toBeCloseTo(0.5, 6); // 1 > 0, 3 > 1; 2 < 3 and the tie 0 = 0 do not count
    expect(m.chosen).toBeCloseTo(1.5, 6);
    expect(m.rejected).toBeCloseTo(1, 6);
    expect(m.margin).toBeCloseTo(0.5, 6);
  });
});
