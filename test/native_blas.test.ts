/**
 * The OpenBLAS products (src/engine/native_blas.ts) on the wasm backend against the cpu backend: every transpose
 * form, decode-sized and odd shapes, batched products with broadcast batch dims, fused products with bias and
 * activation, gradients, bounds checks in the addon, and no leaked tensors. Skipped when the addon is not built,
 * unless RLHF_REQUIRE_BLAS=1 (CI), where a missing addon fails.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { createRequire } from 'node:module';
import '@tensorflow/tfjs-backend-wasm';
import { tf, type Tensor } from '../src/engine/tf.js';
import {
  NATIVE_BLAS_ENV, blasAddonPath, blasThreads, installNativeMatmul, nativeBlasAvailable, nativeBlasStatus, nativeMatmulInstalled,
} from '../src/engine/native_blas.js';
import { relErr } from './helpers/fixtures.js';

const REQUIRE_BLAS_ENV = 'RLHF_REQUIRE_BLAS';
const why = !nativeBlasAvailable() ? nativeBlasStatus().replace(/^OpenBLAS off: /, '')
  : process.env[NATIVE_BLAS_ENV] === '0' ? `disabled by ${NATIVE_BLAS_ENV}=0` : '';
if (why) {
  if (process.env[REQUIRE_BLAS_ENV] === '1') throw new Error(`${REQUIRE_BLAS_ENV}=1 but the OpenBLAS addon is ${why}`);
  console.warn(`skipping native BLAS tests: the addon is ${why}`);
}
// The reason also stands as a skipped test's title, so every reporter shows why the suite did not run.
describe.runIf(why !== '')('OpenBLAS products on the wasm backend', () => {
  it.skip(`skipped: the OpenBLAS addon is ${why} (npm run build:blas; RLHF_REQUIRE_BLAS=1 makes this a failure)`, () => {});
});

/** Deterministic values in [-1, 1) (the same on both backends). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

type Spec = { shape: number[]; seed: number };

type Fn = (...xs: Tensor[]) => Tensor | Tensor[];

/** Runs f on fresh tensors on the wasm backend, and `ref` (default f) on the cpu backend. */
async function onBoth(f: Fn, specs: Spec[], ref: Fn = f): Promise<{ cpu: Tensor[]; wasm: Tensor[] }> {
  const run = async (backend: string, f: Fn) => {
    await tf.setBackend(backend);
    return tf.tidy(() => {
      const xs = specs.map((s) => tf.tensor(values(s.shape.reduce((a, b) => a * b, 1), s.seed), s.shape, 'float32'));
      const out = f(...xs);
      return Array.isArray(out) ? out : [out];
    });
  };
  const cpu = await run('cpu', ref);
  const wasm = await run('wasm', f);
  return { cpu, wasm };
}

async function expectSame(f: Fn, specs: Spec[], ref: Fn = f, tol = 1e-5): Promise<void> {
  const { cpu, wasm } = await onBoth(f, specs, ref);
  for (let i = 0; i < cpu.length; i++) {
    expect(wasm[i]!.shape, `output ${i} shape`).toEqual(cpu[i]!.shape);
    await tf.setBackend('wasm');
    const got = wasm[i]!.dataSync();
    await tf.setBackend('cpu');
    const want = cpu[i]!.dataSync();
    expect(relErr(got, want), `output ${i} of ${JSON.stringify(specs)}`).toBeLessThan(tol);
  }
  await tf.setBackend('wasm');
  tf.dispose(wasm);
  await tf.setBackend('cpu');
  tf.dispose(cpu);
  await tf.setBackend('wasm');
}

const spec = (shape: number[], seed: number): Spec => ({ shape, seed });

describe.skipIf(why !== '')('OpenBLAS products on the wasm backend', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    expect(installNativeMatmul(), nativeBlasStatus()).toBe(true);
    expect(nativeMatmulInstalled()).toBe(true);
    expect(nativeBlasStatus()).toMatch(/^OpenBLAS sgemm \(\S+, \d+ threads?\)$/);
  });

  it('2-D products in all four transpose forms, odd sizes and M = 1', async () => {
    for (const [M, K, N] of [[37, 53, 29], [1, 64, 50], [1, 1, 1], [130, 7, 65]] as const) {
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          await expectSame((a, b) => tf.matMul(a!, b!, tA, tB), [spec(tA ? [K, M] : [M, K], 1), spec(tB ? [N, K] : [K, N], 2)]);
        }
      }
    }
  });

  it('3-D and 4-D batched products, with broadcast batch dims and transposes', async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[3, 5, 7], [3, 7, 4], false, false],
      [[3, 7, 5], [3, 4, 7], true, true],
      [[1, 5, 7], [4, 7, 6], false, false], // a batch of 1 against many
      [[4, 5, 7], [1, 6, 7], false, true],
      [[4, 5, 7], [7, 6], false, false], // rank 3 against rank 2
      [[4, 7, 5], [7, 6], true, false],
      [[5, 7], [4, 7, 6], false, false],
      [[2, 3, 5, 8], [2, 3, 8, 4], false, false],
      [[2, 3, 8, 5], [2, 3, 4, 8], true, true],
      [[2, 3, 5, 8], [3, 8, 4], false, false],
    ];
    for (const [sa, sb, tA, tB] of cases) await expectSame((a, b) => tf.matMul(a!, b!, tA, tB), [spec(sa, 3), spec(sb, 4)]);
    // General broadcasting (both operands broadcast): the cpu kernel handles only a batch of 1 against many, so the
    // reference tiles both operands to the output's batch dims first.
    await expectSame((a, b) => tf.matMul(a!, b!), [spec([2, 1, 5, 8], 3), spec([1, 3, 8, 4], 4)],
      (a, b) => tf.matMul(tf.tile(a!, [1, 3, 1, 1]), tf.tile(b!, [2, 1, 1, 1])));
    await expectSame((a, b) => tf.matMul(a!, b!, true, true), [spec([2, 1, 8, 5], 3), spec([3, 4, 8], 4)],
      (a, b) => tf.matMul(tf.tile(a!, [1, 3, 1, 1]), tf.tile(tf.reshape(b!, [1, 3, 4, 8]), [2, 1, 1, 1]), true, true));
  });

  it('empty shapes', async () => {
    await tf.setBackend('wasm');
    const out = tf.matMul(tf.zeros([0, 4, 3]), tf.zeros([0, 3, 5]));
    expect(out.shape).toEqual([0, 4, 5]);
    const k0 = tf.matMul(tf.zeros([4, 0]), tf.zeros([0, 5]));
    expect(k0.shape).toEqual([4, 5]);
    expect(Array.from(k0.dataSync())).toEqual(new Array(20).fill(0));
    expect(tf.matMul(tf.zeros([0, 3]), tf.zeros([3, 5])).shape).toEqual([0, 5]);
    tf.dispose([out, k0]);
  });

  it('fused products: bias [N] and broadcastable biases, relu, and the stock fallback for other activations', async () => {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const sa = tA ? [3, 9, 6] : [3, 6, 9];
        const sb = tB ? [5, 9] : [9, 5];
        await expectSame((a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias, transposeA: tA, transposeB: tB }), [spec(sa, 5), spec(sb, 6), spec([5], 7)]);
        await expectSame((a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias, transposeA: tA, transposeB: tB, activation: 'relu' }), [spec(sa, 8), spec(sb, 9), spec([5], 10)]);
      }
    }
    await expectSame((a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias }), [spec([6, 9], 11), spec([9, 5], 12), spec([6, 1], 13)]);
    await expectSame((a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias }), [spec([6, 9], 11), spec([9, 5], 12), spec([6, 5], 14)]);
    await expectSame((a, b) => tf.fused.matMul({ a: a!, b: b!, activation: 'relu' }), [spec([6, 9], 15), spec([9, 5], 16)]);
    // leakyrelu is not done natively: the stock kernel runs it.
    await expectSame((a, b, bias) => tf.fused.matMul({ a: a!, b: b!, bias, activation: 'leakyrelu', leakyreluAlpha: 0.1 }), [spec([6, 9], 17), spec([9, 5], 18), spec([5], 19)]);
  });

  it('gradients of products (tf.grads), plain, transposed, broadcast and fused', async () => {
    const withGrads = (f: (a: Tensor, b: Tensor) => Tensor) => (a?: Tensor, b?: Tensor, probe?: Tensor) => {
      const g = tf.grads((x: Tensor, y: Tensor) => tf.sum(tf.mul(f(x, y), probe!)))([a!, b!]);
      return [f(a!, b!), ...g];
    };
    await expectSame(withGrads((a, b) => tf.matMul(a, b)), [spec([7, 5], 20), spec([5, 3], 21), spec([7, 3], 22)]);
    await expectSame(withGrads((a, b) => tf.matMul(a, b, true, true)), [spec([5, 7], 23), spec([3, 5], 24), spec([7, 3], 25)]);
    await expectSame(withGrads((a, b) => tf.matMul(a, b, false, true)), [spec([2, 4, 7, 5], 26), spec([2, 4, 3, 5], 27), spec([2, 4, 7, 3], 28)]);
    await expectSame(withGrads((a, b) => tf.matMul(a, b, true, false)), [spec([4, 5, 7], 29), spec([4, 5, 3], 30), spec([4, 7, 3], 31)]);
    await expectSame(withGrads((a, b) => tf.fused.matMul({ a, b, bias: tf.fill([3], 0.25), activation: 'relu' })), [spec([7, 5], 35), spec([5, 3], 36), spec([7, 3], 37)]);
  });

  it('leaves no tensors behind', async () => {
    await tf.setBackend('wasm');
    const a = tf.tensor(values(6 * 8 * 5, 40), [6, 8, 5]);
    const b = tf.tensor(values(5 * 4, 41), [5, 4]);
    const bias = tf.tensor(values(4, 42), [4]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose([tf.matMul(a, b), tf.matMul(a, a, true), tf.fused.matMul({ a, b, bias, activation: 'relu' })]);
      tf.dispose(tf.grads((x: Tensor) => tf.sum(tf.matMul(x, b)))([a]));
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([a, b, bias]);
  });

  it('the addon refuses offsets, extents and leading dims outside its arrays', () => {
    type Gemm = (...args: unknown[]) => void;
    const { gemm } = createRequire(import.meta.url)(blasAddonPath()) as { gemm: Gemm };
    const A = new Float32Array(6);
    const C = new Float32Array(4);
    expect(() => gemm(false, false, 2, 2, 3, A, 0, 3, A, 0, 3, C, 0, 2, 1, 0, 0, 0)).toThrow(/B needs 8 elements/);
    expect(() => gemm(false, false, 2, 2, 1, A, 5, 1, A, 0, 2, C, 0, 2, 1, 0, 0, 0)).toThrow(/A needs 7 elements/);
    expect(() => gemm(false, false, 2, 2, 1, A, 0, 1, A, 0, 2, C, 1, 2, 1, 0, 0, 0)).toThrow(/C needs 5 elements/);
    expect(() => gemm(false, false, 1, 2, 1, A, 0, 1, A, 0, 2, C, 0, 2, 3, 0, 0, 2)).toThrow(/C needs 6 elements/);
    expect(() => gemm(false, false, 2, 2, 3, A, 0, 2, A, 0, 2, C, 0, 2, 1, 0, 0, 0)).toThrow(/leading dimension of A/);
    expect(() => gemm(false, false, 2, 2, 1, A, -1, 1, A, 0, 2, C, 0, 2, 1, 0, 0, 0)).toThrow(/non-negative integer/);
    expect(() => gemm(false, false, 2, 2, 1, new Float64Array(6), 0, 1, A, 0, 2, C, 0, 2, 1, 0, 0, 0)).toThrow(/Float32Array/);
    // In range: [[1],[2]] · [[3, 4]] → [[3, 4], [6, 8]].
    const C2 = new Float32Array(4);
    gemm(false, false, 2, 2, 1, new Float32Array([1, 2]), 0, 1, new Float32Array([3, 4]), 0, 2, C2, 0, 2, 1, 0, 0, 0);
    expect(Array.from(C2)).toEqual([3, 4, 6, 8]);
  });

  it('thread count: RLHF_BLAS_THREADS, else the cores shared among the MPI ranks on this node', () => {
    expect(blasThreads({ RLHF_BLAS_THREADS: '3' })).toBe(3);
    expect(() => blasThreads({ RLHF_BLAS_THREADS: '0' })).toThrow(/positive integer/);
    const cores = blasThreads({});
    expect(cores).toBeGreaterThanOrEqual(1);
    expect(blasThreads({ OMPI_COMM_WORLD_LOCAL_SIZE: String(cores * 4) })).toBe(1);
    expect(blasThreads({ MPI_LOCALNRANKS: '1' })).toBe(cores);
  });
});
