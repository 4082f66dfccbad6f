import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { accumulate, clipByGlobalNorm, disposeGrads, globalNorm, scaleGrads } from '../src/trainer/grad_utils.js';

const values = (t: tf.Tensor) => Array.from(t.dataSync());

describe('globalNorm', () => {
  it('is the 2-norm over all gradients together', () => {
    // sqrt(3^2 + 4^2 + 12^2) = sqrt(169) = 13
    const grads = { a: tf.tensor1d([3, 4]), b: tf.tensor2d([[12]]) };
    expect(globalNorm(grads)).toBeCloseTo(13, 5);
    expect(globalNorm(new Map())).toBe(0);
    disposeGrads(grads);
  });
});

describe('clipByGlobalNorm', () => {
  it("scales by maxNorm / (norm + 1e-6) when the norm is above maxNorm (torch's clip_grad_norm_)", () => {
    const a = tf.tensor1d([3, 4]); // norm 5
    const before = tf.memory().numTensors;
    const { grads, norm, clipped } = clipByGlobalNorm({ a }, 1);
    expect(norm).toBeCloseTo(5, 5);
    expect(clipped).toBe(true);
    const coef = 1 / (5 + 1e-6);
    values(grads.get('a')!).forEach((x, i) => expect(x).toBeCloseTo([3, 4][i]! * coef, 6));
    expect(a.isDisposed).toBe(true); // the input was replaced
    expect(tf.memory().numTensors).toBe(before);
    disposeGrads(grads);
  });

  it('returns the same tensors when the norm is within maxNorm', () => {
    const a = tf.tensor1d([0.3, 0.4]);
    const { grads, norm, clipped } = clipByGlobalNorm(new Map([['a', a]]), 1);
    expect(norm).toBeCloseTo(0.5, 6);
    expect(clipped).toBe(false);
    expect(grads.get('a')).toBe(a);
    a.dispose();
  });

  it('leaves gradients alone and reports a non-finite norm', () => {
    const a = tf.tensor1d([NaN, 1]);
    const { grads, norm } = clipByGlobalNorm({ a }, 1);
    expect(Number.isNaN(norm)).toBe(true);
    expect(grads.get('a')).toBe(a);
    a.dispose();
    expect(() => clipByGlobalNorm({}, 0)).toThrow(/maxNorm/);
  });
});

describe('accumulate / scaleGrads', () => {
  it('sums micro-batch gradients, disposes what it replaces, and averages', () => {
    const start = tf.memory().numTensors;
    let sum = accumulate(undefined, { w: tf.tensor1d([1, 2]), b: tf.scalar(1) });
    sum = accumulate(sum, { w: tf.tensor1d([3, 4]), b: tf.scalar(2) });
    sum = accumulate(sum, new Map([['w', tf.tensor1d([5, 6])]]));
    expect(values(sum.get('w')!)).toEqual([9, 12]);
    expect(values(sum.get('b')!)).toEqual([3]);
    expect(tf.memory().numTensors).toBe(start + 2); // only the two sums are alive
    const mean = scaleGrads(sum, 1 / 3);
    values(mean.get('w')!).forEach((x, i) => expect(x).toBeCloseTo([3, 4][i]!, 6));
    expect(tf.memory().numTensors).toBe(start + 2);
    disposeGrads(mean);
    expect(tf.memory().numTensors).toBe(start);
  });

  it('names the gradient whose shape does not match the sum', () => {
    const sum = accumulate(undefined, { w: tf.zeros([2]) });
    expect(() => accumulate(sum, { w: tf.zeros([3]) })).toThrow(/gradient 'w' has shape \[3\] but the sum has \[2\]/);
    disposeGrads(sum);
  });
});
