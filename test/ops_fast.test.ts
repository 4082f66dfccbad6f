/**
 * The CPU-backend fast paths in src/models/ops against plain tfjs compositions (values and gradients), on cpu and
 * wasm: wasm kernel overrides (Identity/Slice/SplitV/Unpack), attention in all three paths (head loop, decode
 * broadcast, batched) with grouped kv heads, the chunked vocabulary projection, token losses, the fused LM-head
 * loss, GELU, LayerNorm and linear with bias.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf, type Tensor } from '../src/engine/tf.js';
import { installKernelOverrides } from '../src/models/ops/kernel_overrides.js';
import { attention } from '../src/models/ops/attention.js';
import { setUnbatchedMatmul, columnSums } from '../src/models/ops/matmul.js';
import { projectToVocab, VOCAB_CHUNK } from '../src/models/ops/vocab_projection.js';
import { crossEntropy, tokenLogProbs, causalLmLoss, IGNORE_INDEX } from '../src/models/ops/loss.js';
import { lmHeadCrossEntropy } from '../src/models/ops/lm_head_loss.js';
import { headLogProbsAndEntropy } from '../src/models/ops/head_logprobs.js';
import { activate } from '../src/models/ops/activations.js';
import { layerNorm } from '../src/models/ops/norms.js';
import { linear } from '../src/models/ops/linear.js';
import { rmsNorm } from '../src/models/ops/norms.js';
import { applyRotary, rotaryTables } from '../src/models/ops/positions.js';
import { defaultInvFreq } from '../src/models/ops/rope.js';
import * as lean from '../src/models/ops/lean.js';
import { relErr } from './helpers/fixtures.js';

let seed = 1;
const rand = (shape: number[], scale = 1) => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed++), scale);

/** Value and gradients of sum(f(xs)·probe) for a fixed random probe (so every output element matters). */
function valueAndGrads(f: (...xs: Tensor[]) => Tensor, xs: Tensor[]): { value: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const out = f(...xs);
    const probe = tf.randomNormal(out.shape, 0, 1, 'float32', 99);
    const g = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(f(...a), probe)))(xs);
    return { value: out.dataSync() as Float32Array, grads: g.map((t) => t.dataSync() as Float32Array) };
  });
}

function expectClose(got: ReturnType<typeof valueAndGrads>, want: ReturnType<typeof valueAndGrads>, tol = 1e-5): void {
  expect(relErr(got.value, want.value)).toBeLessThan(tol);
  got.grads.forEach((g, i) => expect(relErr(g, want.grads[i]!), `grad ${i}`).toBeLessThan(tol));
}

/** Reference attention written with plain tfjs ops (tfjs differentiates it). */
function refAttention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number): Tensor {
  const [B, H] = q.shape as [number, number];
  const rep = H / k.shape[1]!;
  // HF's repeat_kv: kv head j serves query heads j·rep … j·rep + rep − 1 (rank-3 tile: tfjs differentiates it).
  const repeat = (t: Tensor) => {
    const [, Hkv, S, hs] = t.shape as [number, number, number, number];
    return rep === 1 ? t : tf.reshape(tf.tile(tf.reshape(t, [B * Hkv, 1, S * hs]), [1, rep, 1]), [B, H, S, hs]);
  };
  const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, repeat(k), false, true), scale), bias), -1);
  return tf.matMul(p, repeat(v));
}

describe.each(['cpu', 'wasm'] as const)('%s backend: fast ops match plain tfjs', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
    installKernelOverrides();
    setUnbatchedMatmul(true);
  });

  it('slice, split, unstack and clone give exactly what the stock kernels compute', () => {
    tf.tidy(() => {
      const x = tf.reshape(tf.range(0, 2 * 3 * 5 * 7), [2, 3, 5, 7]);
      const vals = x.arraySync() as number[][][][];
      const s = tf.slice(x, [1, 0, 2, 3], [1, 3, 2, 4]).arraySync() as number[][][][];
      expect(s[0]![2]![1]).toEqual(vals[1]![2]![3]!.slice(3, 7));
      expect(tf.slice(x, [0, 1], [-1, 1]).shape).toEqual([2, 1, 5, 7]);
      const parts = tf.split(x, [2, 5], 3);
      expect((parts[1]!.arraySync() as number[][][][])[1]![2]![4]).toEqual(vals[1]![2]![4]!.slice(2));
      const rows = tf.unstack(x, 2);
      expect(rows).toHaveLength(5);
      expect((rows[3]!.arraySync() as number[][][])[1]![0]).toEqual(vals[1]![0]![3]);
      const c = tf.clone(x);
      x.dispose();
      expect(c.dataSync()[209]).toBe(209); // the clone outlives its source
    });
  });

  it.each([
    ['head loop (T ≥ 16)', 2, 4, 4, 20, 20],
    ['head loop, grouped kv heads', 2, 4, 2, 24, 24],
    ['decode broadcast (T = 1) after a cache', 3, 4, 2, 1, 9],
  ] as const)('attention, %s: values and q/k/v gradients', (_name, B, H, Hkv, T, S) => {
    const hs = 8;
    const q = rand([B, H, T, hs]);
    const k = rand([B, Hkv, S, hs]);
    const v = rand([B, Hkv, S, hs]);
    const bias = tf.where(tf.greater(tf.randomUniform([B, 1, T, S], 0, 1, 'float32', 3), 0.8), tf.fill([B, 1, T, S], -1e9), tf.zeros([B, 1, T, S]));
    const f = (a: Tensor, b: Tensor, c: Tensor) => attention(a, b, c, bias, 0.35);
    const g = (a: Tensor, b: Tensor, c: Tensor) => refAttention(a, b, c, bias, 0.35);
    expectClose(valueAndGrads(f, [q, k, v]), valueAndGrads(g, [q, k, v]), 1e-5);
    setUnbatchedMatmul(false); // the batched path GPU backends take
    try {
      expectClose(valueAndGrads(f, [q, k, v]), valueAndGrads(g, [q, k, v]), 1e-5);
    } finally {
      setUnbatchedMatmul(true);
    }
    tf.dispose([q, k, v, bias]);
  });

  it('chunked vocabulary projection equals h·Wᵀ with both gradients', () => {
    const V = 2 * VOCAB_CHUNK + 37;
    for (const N of [5, 40]) { // both orientations of the dW product (N < C and N ≥ C)
      const h = rand([N, 16]);
      const W = rand([V, 16], 0.1);
      expectClose(valueAndGrads(projectToVocab, [h, W]), valueAndGrads((a, b) => tf.matMul(a, b, false, true), [h, W]), 1e-5);
      tf.dispose([h, W]);
    }
  });

  it('crossEntropy and tokenLogProbs equal log-softmax with a one-hot pick, ignored labels included', () => {
    const N = 12, V = 50;
    const logits = rand([N, V], 3);
    const labels = tf.tensor1d([3, 49, 0, IGNORE_INDEX, 7, 7, 1, IGNORE_INDEX, 20, 30, 40, 2], 'int32');
    const ref = (x: Tensor) => {
      const valid = tf.cast(tf.notEqual(labels, IGNORE_INDEX), 'float32');
      const picked = tf.sum(tf.mul(tf.logSoftmax(x), tf.oneHot(tf.maximum(labels, tf.scalar(0, 'int32')), V)), -1);
      return tf.div(tf.neg(tf.sum(tf.mul(picked, valid))), tf.sum(valid));
    };
    expectClose(valueAndGrads((x) => crossEntropy(x, labels), [logits]), valueAndGrads(ref, [logits]), 1e-5);
    const t3 = tf.tensor2d([[1, 2, 3], [4, 5, 6]], [2, 3], 'int32');
    const l3 = rand([2, 3, V], 4);
    const ref3 = (x: Tensor) => tf.sum(tf.mul(tf.logSoftmax(x), tf.oneHot(t3, V)), -1);
    expectClose(valueAndGrads((x) => tokenLogProbs(x, t3), [l3]), valueAndGrads(ref3, [l3]), 1e-5);
    tf.dispose([logits, labels, t3, l3]);
  });

  it('causalLmLoss shifts labels, not logits', () => {
    const logits = rand([2, 5, 11]);
    const labels = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, IGNORE_INDEX, 9, 10]], [2, 5], 'int32');
    const got = causalLmLoss(logits, labels).dataSync()[0]!;
    const want = tf.tidy(() => crossEntropy(tf.reshape(tf.slice(logits, [0, 0, 0], [2, 4, 11]), [8, 11]), tf.reshape(tf.slice(labels, [0, 1], [2, 4]), [8]))).dataSync()[0]!;
    expect(Math.abs(got - want)).toBeLessThan(1e-6);
    tf.dispose([logits, labels]);
  });

  it('causalLmLoss with labels one longer than the inputs: the last position predicts the extra label', () => {
    // its own seed: rand()'s shared counter would give the tests after this one other numbers
    const logits = tf.randomNormal([2, 4, 11], 0, 1, 'float32', 4242);
    const labels = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, IGNORE_INDEX, 9, 10]], [2, 5], 'int32');
    const got = causalLmLoss(logits, labels).dataSync()[0]!;
    // every one of the 4 positions has a target: labels[:, 1:5] (one of them ignored)
    const want = tf.tidy(() => crossEntropy(tf.reshape(logits, [8, 11]), tf.reshape(tf.slice(labels, [0, 1], [2, 4]), [8]))).dataSync()[0]!;
    expect(Math.abs(got - want) / Math.abs(want)).toBeLessThan(1e-6);
    const aligned = causalLmLoss(logits, tf.slice(labels, [0, 0], [2, 4])).dataSync()[0]!;
    expect(Math.abs(aligned - got)).toBeGreaterThan(1e-4);
    expect(() => causalLmLoss(logits, tf.zeros([2, 6], 'int32'))).toThrow(/labels of 6 positions for 4 inputs \(expected 4 or 5\)/);
    tf.dispose([logits, labels]);
  });

  it('lmHeadCrossEntropy equals crossEntropy(h·Wᵀ) in value and gradients, over several row and vocab chunks', () => {
    const N = 37, C = 8, V = VOCAB_CHUNK + 100;
    const h = rand([N, C]);
    const W = rand([V, C], 0.3);
    const labels = tf.tensor1d(Array.from({ length: N }, (_, i) => (i % 5 === 0 ? IGNORE_INDEX : (i * 997) % V)), 'int32');
    const fused = (a: Tensor, b: Tensor) => tf.mul(lmHeadCrossEntropy(a, b, labels, 10), 3); // dy ≠ 1 reaches the saved grads
    const plain = (a: Tensor, b: Tensor) => tf.mul(crossEntropy(tf.matMul(a, b, false, true), labels), 3);
    expectClose(valueAndGrads(fused, [h, W]), valueAndGrads(plain, [h, W]), 1e-5);
    // Without a tape: the loss alone, same value.
    expect(Math.abs(lmHeadCrossEntropy(h, W, labels, 10).dataSync()[0]! - tf.tidy(() => crossEntropy(tf.matMul(h, W, false, true), labels)).dataSync()[0]!)).toBeLessThan(1e-5);
    tf.dispose([h, W, labels]);
  });

  it('headLogProbsAndEntropy equals log-softmax pick and entropy of h·Wᵀ, values and gradients, over row and vocab chunks', () => {
    const N = 23, C = 8, V = VOCAB_CHUNK + 100;
    const h = rand([N, C], 2);
    const W = rand([V, C], 0.5);
    const targets = tf.tensor1d(Array.from({ length: N }, (_, i) => (i * 7919) % V), 'int32');
    const plain = (a: Tensor, b: Tensor) => {
      const z = tf.matMul(a, b, false, true); // (N, V)
      const logp = tokenLogProbs(tf.reshape(z, [1, N, V]), tf.reshape(targets, [1, N]));
      const ls = tf.logSoftmax(z, -1);
      const H = tf.neg(tf.sum(tf.mul(tf.exp(ls), ls), -1));
      return tf.stack([tf.reshape(logp, [N]), H], 1);
    };
    // rowsPerChunk 6: four row chunks, the last one short. On wasm, XNNPACK sums dh = dz·W's 4,196-long products in
    // one float32 chain, and dz sums to zero over the vocabulary: 3.5e-5 there (3e-7 on cpu, 9e-6 at V = 1,000).
    const tol = backend === 'wasm' ? 1e-4 : 1e-5;
    expectClose(valueAndGrads((a, b) => headLogProbsAndEntropy(a, b, targets, 6), [h, W]), valueAndGrads(plain, [h, W]), tol);
    // Without a tape, the same values; and only the log-prob column carrying a gradient (PPO's policy loss) works too.
    const free = headLogProbsAndEntropy(h, W, targets, 6);
    expect(relErr(free.dataSync(), tf.tidy(() => plain(h, W)).dataSync())).toBeLessThan(1e-5);
    const onlyLogp = (a: Tensor, b: Tensor) => tf.slice(headLogProbsAndEntropy(a, b, targets, 6), [0, 0], [N, 1]);
    const onlyLogpPlain = (a: Tensor, b: Tensor) => tf.slice(plain(a, b), [0, 0], [N, 1]);
    expectClose(valueAndGrads(onlyLogp, [h, W]), valueAndGrads(onlyLogpPlain, [h, W]), tol);
    // A frozen head (an adapter trains): the same value and dh, and no gradient for the head at all.
    const frozen = (a: Tensor) => headLogProbsAndEntropy(a, W, targets, 6, null, true);
    const got = valueAndGrads(frozen, [h]);
    const want = valueAndGrads(plain, [h, W]);
    expect(relErr(got.value, want.value)).toBeLessThan(1e-5);
    expect(relErr(got.grads[0]!, want.grads[0]!)).toBeLessThan(tol);
    expect(() => tf.tidy(() => tf.grads((a: Tensor, b: Tensor) => tf.sum(headLogProbsAndEntropy(a, b, targets, 6, null, true)))([h, W]))).toThrow();
    tf.dispose([h, W, targets, free]);
  });

  it('GELU (tanh form), LayerNorm and linear-with-bias match their plain formulas', () => {
    const x = rand([3, 4, 10], 2);
    const gelu = (t: Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(tf.tanh(tf.mul(tf.add(t, tf.mul(tf.pow(t, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
    expectClose(valueAndGrads((t) => activate(t, 'gelu_new'), [x]), valueAndGrads(gelu, [x]), 1e-5);
    const w = rand([10]);
    const b = rand([10]);
    const ln = (t: Tensor, ww: Tensor, bb: Tensor) => {
      const m = tf.mean(t, -1, true);
      const c = tf.sub(t, m);
      return tf.add(tf.mul(tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), -1, true), 1e-5))), ww), bb);
    };
    expectClose(valueAndGrads((t, ww, bb) => layerNorm(t, ww, bb, 1e-5), [x, w, b]), valueAndGrads(ln, [x, w, b]), 1e-5);
    const wIO = rand([10, 6]);
    const bias = rand([6]);
    expectClose(valueAndGrads((t, ww, bb) => linear(t, ww, bb, 'in_out'), [x, wIO, bias]),
      valueAndGrads((t, ww, bb) => tf.add(tf.matMul(tf.reshape(t, [12, 10]), ww), bb), [x, wIO, bias]), 1e-5);
    const wOI = rand([6, 10]);
    expectClose(valueAndGrads((t, ww) => linear(t, ww, null, 'out_in'), [x, wOI]),
      valueAndGrads((t, ww) => tf.matMul(tf.reshape(t, [12, 10]), ww, false, true), [x, wOI]), 1e-5);
    expect(relErr(columnSums(tf.reshape(x, [12, 10])).dataSync(), tf.sum(tf.reshape(x, [12, 10]), 0).dataSync())).toBeLessThan(1e-6);
    tf.dispose([x, w, b, wIO, bias, wOI]);
  });

  it('lean reshape/add/transpose/dropout give tfjs\'s values and gradients', () => {
    const a = rand([4, 6]);
    const b = rand([4, 6]);
    expectClose(valueAndGrads((x, y) => lean.add(lean.reshape(x, [2, 12]), lean.reshape(y, [2, 12])), [a, b]),
      valueAndGrads((x, y) => tf.add(tf.reshape(x, [2, 12]), tf.reshape(y, [2, 12])), [a, b]), 1e-6);
    expectClose(valueAndGrads((x) => lean.transpose(tf.reshape(x, [2, 2, 6]), [2, 0, 1]), [a]),
      valueAndGrads((x) => tf.transpose(tf.reshape(x, [2, 2, 6]), [2, 0, 1]), [a]), 1e-6);
    expectClose(valueAndGrads((x) => lean.dropout(x, 0.3, 17), [a]), valueAndGrads((x) => tf.dropout(x, 0.3, undefined, 17), [a]), 1e-6);
    tf.dispose([a, b]);
  });

  it('RMSNorm, SiLU and rotary embedding match their plain formulas (rotary tables made and freed inside the tape)', () => {
    const x = rand([2, 3, 4, 8]);
    const w = rand([8]);
    const rms = (t: Tensor, ww: Tensor) => tf.mul(tf.mul(t, tf.rsqrt(tf.add(tf.mean(tf.square(t), -1, true), 1e-6))), ww);
    expectClose(valueAndGrads((t, ww) => rmsNorm(t, ww, 1e-6), [x, w]), valueAndGrads(rms, [x, w]), 1e-5);
    expectClose(valueAndGrads((t) => activate(t, 'silu'), [x]), valueAndGrads((t) => tf.mul(t, tf.sigmoid(t)), [x]), 1e-5);
    const pos = tf.tensor2d([[0, 1, 2, 3], [5, 6, 7, 8]], [2, 4], 'int32');
    const plainRotary = (t: Tensor, cos: Tensor, sin: Tensor) => {
      const [x1, x2] = tf.split(t, 2, 3);
      return tf.add(tf.mul(t, tf.expandDims(cos, 1)), tf.mul(tf.concat([tf.neg(x2!), x1!], 3), tf.expandDims(sin, 1)));
    };
    // The tables are created inside the differentiated function, so they are disposed before the backward pass.
    const viaOp = (t: Tensor) => { const r = rotaryTables(pos, defaultInvFreq(10000, 8)); return applyRotary(t, r.cos, r.sin); };
    const viaPlain = (t: Tensor) => { const r = rotaryTables(pos, defaultInvFreq(10000, 8)); return plainRotary(t, r.cos, r.sin); };
    expectClose(valueAndGrads(viaOp, [x]), valueAndGrads(viaPlain, [x]), 1e-5);
    tf.dispose([x, w, pos]);
  });
});
