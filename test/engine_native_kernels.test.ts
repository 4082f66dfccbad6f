/**
 * Every native kernel of the `native` backend (src/engine/native_backend.ts, native/engine) against the cpu
 * backend's kernel on the same inputs: random shapes with broadcasting, odd and zero sizes, sizes large enough to
 * run on several threads, NaN propagation, every axis combination of the reductions, gradients through them, the
 * self-test, and no leaked tensors. Skipped when the addons are not built, unless RLHF_REQUIRE_NATIVE=1 (CI).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { tf, type Tensor } from '../src/engine/tf.js';
import { nativeBackendUnavailable, nativeKernelNames, registerNativeBackend } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { FUSED } from '../src/engine/native_fused.js';
import { relativeError, selfTestValues } from '../src/engine/self_test.js';
import { relErr } from './helpers/fixtures.js';
import { seededValues as values } from './helpers/seeded_values.js';

const REQUIRE_ENV = 'RLHF_REQUIRE_NATIVE';
const why = nativeBackendUnavailable() || (nativeBlasAvailable() ? '' : 'the OpenBLAS addon (native/blas) is not built');
if (why) {
  if (process.env[REQUIRE_ENV] === '1') throw new Error(`${REQUIRE_ENV}=1 but the native backend is unavailable: ${why}`);
  console.warn(`skipping native kernel tests: ${why}`);
}
describe.runIf(why !== '')('native kernels', () => {
  it.skip(`skipped: ${why} (npm run build:engine; ${REQUIRE_ENV}=1 makes this a failure)`, () => {});
});

type Spec = { shape: number[]; seed?: number; lo?: number; hi?: number; dtype?: 'float32' | 'int32' | 'bool' };
type Fn = (...xs: Tensor[]) => Tensor | Tensor[];

function make(s: Spec, i: number): Tensor {
  const n = s.shape.reduce((a, b) => a * b, 1);
  const v = values(n, s.seed ?? i + 1, s.lo, s.hi);
  if (s.dtype === 'int32') return tf.tensor(Int32Array.from(v, (x) => Math.floor(x)), s.shape, 'int32');
  if (s.dtype === 'bool') return tf.tensor(Uint8Array.from(v, (x) => (x > 0 ? 1 : 0)), s.shape, 'bool');
  return tf.tensor(v, s.shape, 'float32');
}

async function run(backend: string, f: Fn, specs: Spec[]): Promise<{ shape: number[]; dtype: string; data: number[] }[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(() => {
    const out = f(...specs.map(make));
    return Array.isArray(out) ? out : [out];
  });
  const res = outs.map((t) => ({ shape: t.shape, dtype: t.dtype, data: Array.from(t.dataSync()) }));
  tf.dispose(outs);
  return res;
}

/** f on native equals f on cpu: same shapes and dtypes, relative error ≤ tol (NaN where cpu has NaN). */
async function expectSame(f: Fn, specs: Spec[], tol = 1e-6, reference: Fn = f): Promise<void> {
  const ref = await run('cpu', reference, specs);
  const got = await run('native', f, specs);
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    expect(got[i]!.shape).toEqual(ref[i]!.shape);
    expect(got[i]!.dtype).toBe(ref[i]!.dtype);
    const r = ref[i]!.data;
    const g = got[i]!.data;
    expect(g.length).toBe(r.length);
    // Non-finite values must match exactly (same NaN and ±Infinity places); the finite ones within tol.
    const rf: number[] = [];
    const gf: number[] = [];
    let mismatch = -1;
    for (let k = 0; k < r.length && mismatch < 0; k++) {
      if (Number.isFinite(r[k]!) && Number.isFinite(g[k]!)) {
        rf.push(r[k]!);
        gf.push(g[k]!);
      } else if (!Object.is(r[k], g[k]) && !(Number.isNaN(r[k]!) && Number.isNaN(g[k]!))) mismatch = k;
    }
    expect(mismatch < 0 ? null : `element ${mismatch}: ${g[mismatch]} vs ${r[mismatch]}`).toBeNull();
    if (rf.some((v) => v !== 0)) expect(relErr(gf, rf)).toBeLessThanOrEqual(tol);
    else expect(gf).toEqual(rf);
  }
}

describe.runIf(why === '')('native backend kernels against the cpu backend', () => {
  beforeAll(() => {
    registerNativeBackend(2);
  });

  it('registers every cpu kernel, overrides the costly ones, and adds the fused ones', () => {
    const cpu = tf.getKernelsForBackend('cpu').map((k) => k.kernelName).sort();
    const native = tf.getKernelsForBackend('native').map((k) => k.kernelName).sort();
    expect(native).toEqual([...cpu, ...Object.values(FUSED)].sort());
    for (const name of nativeKernelNames()) expect(cpu).toContain(name);
  });

  // a shape, b shape: same, scalar either side, trailing vector, both-side broadcasts, odd, zero-size, multi-thread.
  const pairs: [number[], number[]][] = [
    [[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [1, 3, 1]], [[5], []], [[], [7]], [[], []], [[0, 3], [3]],
    [[17, 33], [17, 1]], [[2, 3, 1, 5], [3, 4, 1]], [[300, 301], [301]], [[257, 1], [1, 259]], [[6, 12000], [6, 12000]],
  ];
  const binary: [string, (a: Tensor, b: Tensor) => Tensor, number?, number?][] = [
    ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div, 0.5, 2], ['maximum', tf.maximum], ['minimum', tf.minimum],
    ['pow', tf.pow, 0.1, 2], ['squaredDifference', tf.squaredDifference], ['equal', tf.equal], ['notEqual', tf.notEqual],
    ['less', tf.less], ['lessEqual', tf.lessEqual], ['greater', tf.greater], ['greaterEqual', tf.greaterEqual],
  ];
  for (const [name, op, lo, hi] of binary) {
    it(`${name} with broadcasting`, async () => {
      for (const [a, b] of pairs) {
        await expectSame((x, y) => op(x!, y!), [{ shape: a, lo, hi }, { shape: b, lo, hi, seed: 99 }]);
      }
      // Equal values on both sides, so the comparisons see ties.
      await expectSame((x) => op(x!, tf.reverse(x!, 1)), [{ shape: [4, 6], lo: lo ?? 0, hi: (lo ?? 0) + 0.0001 }]);
    });
  }

  it('step keeps NaN and zero as the cpu kernel does (ReLU\'s gradient)', async () => {
    await expectSame(() => [tf.step(tf.tensor1d([NaN, 0, -0, 1e-30, -2, 3])), tf.step(tf.tensor1d([NaN, 0, 2, -1]), -0.5)], []);
  });

  it('maximum, minimum and max propagate NaN as the cpu kernels do', async () => {
    const nanFirst = () => tf.tensor1d([NaN, 1, 2, NaN]);
    const other = () => tf.tensor1d([0, NaN, 3, NaN]);
    await expectSame(() => [tf.maximum(nanFirst(), other()), tf.minimum(nanFirst(), other()), tf.max(nanFirst()), tf.min(other()), tf.sum(nanFirst())], []);
  });

  const unary: [string, (x: Tensor) => Tensor, number?, number?][] = [
    ['exp', tf.exp], ['log', tf.log, 0.01, 5], ['sqrt', tf.sqrt, 0, 5], ['rsqrt', tf.rsqrt, 0.01, 5], ['tanh', tf.tanh, -4, 4],
    ['sigmoid', tf.sigmoid, -8, 8], ['erf', tf.erf, -3, 3], ['neg', tf.neg], ['abs', tf.abs], ['relu', tf.relu], ['square', tf.square],
    ['reciprocal', tf.reciprocal, 0.1, 3], ['sin', tf.sin, -6, 6], ['cos', tf.cos, -6, 6], ['log1p', tf.log1p, -0.5, 3],
    ['softplus', tf.softplus, -30, 30], ['floor', tf.floor, -3, 3], ['ceil', tf.ceil, -3, 3], ['sign', tf.sign],
    ['expm1', tf.expm1], ['elu', tf.elu, -3, 3], ['relu6', tf.relu6, -3, 9], ['step', (x) => tf.step(x)], ['step alpha 0.25', (x) => tf.step(x, 0.25)],
  ];
  for (const [name, op, lo, hi] of unary) {
    it(`${name}`, async () => {
      // erf: the cpu kernel is a 1e-7-accurate polynomial; the native one is the C library's (closer to torch).
      const tol = name === 'erf' ? 2e-6 : 1e-6;
      for (const shape of [[7], [3, 5, 2], [0, 4], [], [3, 30001]]) await expectSame((x) => op(x!), [{ shape, lo, hi }], tol);
    });
  }

  it('sum, mean, max, min, prod over every axis combination, with and without keepDims', async () => {
    const shape = [3, 4, 5, 2];
    const axesList: (number | number[] | undefined)[] = [undefined, 0, 1, 2, 3, -1, [0, 1], [1, 2], [0, 2], [1, 3], [0, 3], [0, 1, 2], [0, 2, 3], [0, 1, 2, 3], []];
    for (const keepDims of [false, true]) {
      for (const axes of axesList) {
        await expectSame((x) => [tf.sum(x!, axes, keepDims), tf.mean(x!, axes, keepDims), tf.max(x!, axes, keepDims), tf.min(x!, axes, keepDims)], [{ shape }]);
        await expectSame((x) => tf.prod(x!, axes, keepDims), [{ shape, lo: 0.8, hi: 1.2 }]);
      }
    }
    await expectSame((x) => [tf.sum(x!, 0), tf.sum(x!, 1), tf.mean(x!, -1)], [{ shape: [0, 3] }]);
    await expectSame((x) => [tf.sum(x!, 0), tf.max(x!, -1), tf.mean(x!, 1)], [{ shape: [1000, 300] }]);
  });

  it('argMax and argMin along each axis, with ties', async () => {
    for (const axis of [0, 1, 2, -1]) await expectSame((x) => [tf.argMax(x!, axis), tf.argMin(x!, axis)], [{ shape: [4, 7, 3] }]);
    await expectSame((x) => [tf.argMax(tf.round(x!), -1), tf.argMin(tf.round(x!), 0)], [{ shape: [6, 9], lo: -2, hi: 2 }]);
  });

  it('softmax and logSoftmax over the last axis', async () => {
    for (const shape of [[5], [3, 7], [2, 3, 129], [0, 4], [64, 6400]]) {
      await expectSame((x) => [tf.softmax(tf.mul(x!, 10)), tf.logSoftmax(tf.mul(x!, 10))], [{ shape }]);
    }
    await expectSame(() => tf.softmax(tf.tensor2d([[0, -1e9, -Infinity], [3, 3, 3]])), []);
  });

  it('transpose of every dtype, every permutation of rank 4', async () => {
    const perms = [[0, 1, 2, 3], [1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
    for (const perm of perms) {
      for (const dtype of ['float32', 'int32', 'bool'] as const) await expectSame((x) => tf.transpose(x!, perm), [{ shape: [2, 3, 5, 4], dtype, lo: -9, hi: 9 }]);
    }
    await expectSame((x) => tf.transpose(x!), [{ shape: [513, 257] }]);
    // Tiled (transpose-like) copies with outer axes, odd edges and 1-byte elements.
    await expectSame((x) => [tf.transpose(x!, [0, 2, 1]), tf.transpose(x!, [2, 1, 0]), tf.transpose(x!, [1, 2, 0])], [{ shape: [3, 40, 33] }]);
    await expectSame((x) => tf.transpose(x!), [{ shape: [40, 33], dtype: 'bool' }]);
    await expectSame((x) => tf.transpose(x!), [{ shape: [0, 3] }]);
  });

  it('a transpose that keeps the order of the elements (identity, or moving axes of size 1) shares the buffer', async () => {
    for (const perm of [[0, 1, 2, 3], [1, 0, 3, 2], [0, 3, 2, 1], [3, 0, 1, 2]]) {
      await expectSame((x) => tf.transpose(x!, perm), [{ shape: [2, 1, 5, 1] }]);
    }
    await tf.setBackend('native');
    const backend = tf.backend() as unknown as { data: { get(id: object): { values: unknown } } };
    const x = tf.randomUniform([6400, 192]);
    const same = tf.transpose(x, [0, 1]);
    const moved = tf.transpose(tf.reshape(x, [6400, 1, 192]), [1, 0, 2]);
    expect(same.shape).toEqual([6400, 192]);
    expect(moved.shape).toEqual([1, 6400, 192]);
    expect(backend.data.get(same.dataId).values).toBe(backend.data.get(x.dataId).values);
    expect(backend.data.get(moved.dataId).values).toBe(backend.data.get(x.dataId).values);
    x.dispose();
    expect(same.dataSync()[5]).toBe(moved.dataSync()[5]);
    tf.dispose([same, moved]);
  });

  it('casts int32 and bool to float32 (and bool to int32) as the arrays those dtypes imply', async () => {
    await expectSame((x) => tf.cast(x!, 'float32'), [{ shape: [7, 33], dtype: 'int32', lo: -1000, hi: 1000 }]);
    await expectSame((x) => tf.cast(x!, 'float32'), [{ shape: [5000], dtype: 'bool' }]);
    await expectSame((x) => tf.cast(x!, 'int32'), [{ shape: [9, 4], dtype: 'bool' }]);
    // A native kernel after the cast reads the array (the cpu kernel keeps the Int32Array under the float32 dtype,
    // which sent every later kernel to its JavaScript fallback).
    await expectSame((x, y) => tf.mul(tf.expandDims(tf.cast(x!, 'float32'), 2), y!), [{ shape: [8, 128], dtype: 'int32', lo: 0, hi: 128 }, { shape: [16] }]);
    await tf.setBackend('native');
    const backend = tf.backend() as unknown as { data: { get(id: object): { values: unknown } } };
    const f = tf.cast(tf.tensor1d([1, 2, 3], 'int32'), 'float32');
    const i = tf.cast(tf.tensor1d([1, 0, 1], 'bool'), 'int32');
    expect(backend.data.get(f.dataId).values).toBeInstanceOf(Float32Array);
    expect(backend.data.get(i.dataId).values).toBeInstanceOf(Int32Array);
    tf.dispose([f, i]);
  });

  it('slice, split, unstack, concat, pad', async () => {
    await expectSame((x) => [tf.slice(x!, [1, 0, 2], [2, -1, 3]), tf.slice(x!, [0, 1, 0], [3, 2, 6]), tf.slice(x!, 2), tf.slice(x!, [0, 0, 0], [0, 3, 6])], [{ shape: [3, 4, 6] }]);
    await expectSame((x) => [...tf.split(x!, 3, -1), ...tf.split(x!, [1, -1, 2], 1), ...tf.split(x!, [3, 0], 0)], [{ shape: [3, 4, 6] }]);
    await expectSame((x) => [...tf.unstack(x!, 0), ...tf.unstack(x!, 2)], [{ shape: [3, 4, 6] }]);
    await expectSame((x, y) => [tf.concat([x!, y!], 0), tf.concat([tf.slice(x!, [0, 0, 0], [2, 4, 0]), x!, x!], 2), tf.concat([x!, tf.neg(x!)], 1)], [{ shape: [2, 4, 6] }, { shape: [3, 4, 6] }]);
    await expectSame((x) => tf.concat([tf.cast(tf.greater(x!, 0), 'int32'), tf.cast(tf.less(x!, 0), 'int32')], -1), [{ shape: [5, 3] }]);
    await expectSame((x) => [tf.pad(x!, [[1, 2], [0, 3]]), tf.pad(x!, [[0, 0], [2, 1]], -1.5)], [{ shape: [3, 4] }]);
  });

  it('gather along each axis (float and int32 tables) and its gradient (unsortedSegmentSum)', async () => {
    const idx = () => tf.tensor2d([[0, 2, 2], [1, 0, 3]], [2, 3], 'int32');
    await expectSame((x) => [tf.gather(x!, idx(), 0), tf.gather(x!, idx(), 1), tf.gather(x!, tf.tensor1d([4, 0], 'int32'), 2)], [{ shape: [4, 5, 6] }]);
    await expectSame((x) => tf.gather(x!, tf.tensor1d([3, 1, 1], 'int32')), [{ shape: [4, 3], dtype: 'int32', lo: -50, hi: 50 }]);
    await expectSame((x) => tf.grad((t: Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d([0, 3, 3, 1, 3], 'int32')), tf.range(1, 6).reshape([5, 1]))))(x!), [{ shape: [5, 4] }]);
    await expectSame((x) => tf.unsortedSegmentSum(x!, tf.tensor1d([2, 0, 2, 7], 'int32'), 4), [{ shape: [4, 3] }]);
    await tf.setBackend('native');
    expect(() => tf.gather(tf.ones([3, 2]), tf.tensor1d([3], 'int32')).dataSync()).toThrow(/index value 3 is not in \[0, 2\]/);
  });

  it('matMul: every transpose form, batched with broadcast batch dims, fused bias and relu, decode-sized', async () => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      await expectSame((a, b) => tf.matMul(ta ? tf.transpose(a!) : a!, tb ? tf.transpose(b!) : b!, ta, tb), [{ shape: [7, 5] }, { shape: [5, 3] }], 1e-5);
    }
    await expectSame((a, b) => tf.matMul(a!, b!), [{ shape: [2, 3, 4, 5] }, { shape: [5, 6] }], 1e-5);
    // Batch dims broadcast on both sides: the cpu kernel only broadcasts one side, so its reference tiles first.
    await expectSame((a, b) => tf.matMul(a!, b!, false, true), [{ shape: [2, 1, 4, 5] }, { shape: [3, 6, 5] }], 1e-5,
      (a, b) => tf.matMul(tf.tile(a!, [1, 3, 1, 1]), tf.tile(tf.reshape(b!, [1, 3, 6, 5]), [2, 1, 1, 1]), false, true));
    await expectSame((a, b, c) => tf.fused.matMul({ a: a!, b: b!, bias: c!, activation: 'relu' }), [{ shape: [16, 192] }, { shape: [192, 512] }, { shape: [512] }], 1e-5);
    await expectSame((a, b) => tf.matMul(a!, b!), [{ shape: [0, 5] }, { shape: [5, 3] }]);
    await expectSame((a, b) => tf.matMul(a!, b!), [{ shape: [4, 0] }, { shape: [0, 3] }]);
  });

  it('gradients of a small model agree (the backend self-test) and nothing leaks', async () => {
    await tf.setBackend('cpu');
    const ref = selfTestValues();
    await tf.setBackend('native');
    const before = tf.memory().numTensors;
    expect(relativeError(selfTestValues(), ref)).toBeLessThan(1e-5);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reused output buffers never change what a reader kept, nor a tensor still viewing them', async () => {
    await tf.setBackend('native');
    const x = tf.fill([64, 100], 3);
    const a = tf.add(x, 1); // a pooled buffer (6400 elements)
    const kept = a.dataSync();
    const alias = tf.reshape(a, [100, 64]); // the same data: the buffer stays live
    a.dispose();
    const b = tf.mul(x, 0); // same size: must not take the buffer `alias` still uses
    expect(alias.dataSync()[0]).toBe(4);
    alias.dispose();
    const c = tf.mul(x, 0); // now the buffer may be reused …
    expect(kept[0]).toBe(4); // … and what dataSync() returned is a copy
    expect(Array.from(c.dataSync().slice(0, 2))).toEqual([0, 0]);
    tf.dispose([x, b, c]);
  });

  it('reshape and identity share the buffer; disposal frees the bytes', async () => {
    await tf.setBackend('native');
    const bytes = tf.memory().numBytes;
    const x = tf.ones([1000, 100]);
    const y = tf.reshape(x, [100, 1000]);
    const z = tf.clone(x);
    const backend = tf.backend() as unknown as { data: { get(id: object): { values: unknown } }; numDataIds(): number };
    expect(backend.data.get(y.dataId).values).toBe(backend.data.get(x.dataId).values);
    expect(backend.data.get(z.dataId).values).toBe(backend.data.get(x.dataId).values);
    const ids = backend.numDataIds();
    tf.dispose([x, y, z]);
    expect(backend.numDataIds()).toBe(ids - 1);
    expect(tf.memory().numBytes).toBe(bytes);
  });
});
