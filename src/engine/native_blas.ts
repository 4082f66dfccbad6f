/**
 * OpenBLAS matrix products for the wasm backend: `BatchMatMul` and `_FusedMatMul` re-registered to call
 * `cblas_sgemm` (native/blas, an N-API addon) on the tensors where they lie in the wasm heap, without copying.
 * XNNPACK runs only untransposed 2-D products fast (~20 GFLOP/s on one thread); OpenBLAS runs every form, batched and
 * transposed, at 5-10× that. The addon is optional: without it the stock kernels stay and `nativeBlasStatus()` says
 * why. The cpu backend is never touched (it is the reference the backend self-test compares against).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from './tf.js';
import { rowMajorStrides } from './shape.js';

/** RLHF_NATIVE_BLAS=0 keeps the stock wasm kernels even when the addon is built. */
export const NATIVE_BLAS_ENV = 'RLHF_NATIVE_BLAS';
/** OpenBLAS threads; default: available cores divided by the MPI ranks on this node. */
export const BLAS_THREADS_ENV = 'RLHF_BLAS_THREADS';
export const BLAS_INSTALL_HINT = 'apt-get install libopenblas-dev && npm run build:blas';

interface BlasAddon {
  gemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: Float32Array, aOffset: number, lda: number, B: Float32Array, bOffset: number, ldb: number,
    C: Float32Array, cOffset: number, ldc: number, batch: number, strideA: number, strideB: number, strideC: number,
    beta?: number,
  ): void;
  /** Y = X · W or X · Wᵀ for a packed frozen weight W [R, C] (src/models/ops/packed_weight.ts), expanded per tile. */
  packedGemm(
    format: number, transW: boolean, N: number, R: number, C: number, X: Float32Array, words: Int32Array,
    scales: Float32Array | null, channelAxis: number, Y: Float32Array,
  ): void;
  setThreads(n: number): void;
  getThreads(): number;
  config(): string;
}

/** Where a product's operands and output live: the wasm heap, or the native backend's arrays. */
export interface ProductMemory {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

interface WasmBackendLike extends ProductMemory {
  wasm: { HEAPU8: Uint8Array };
}

/** src/engine and dist/engine both sit two levels below the root. */
export function blasAddonPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'blas', 'build', 'Release', 'rlhf_blas.node');
}

/**
 * OpenBLAS 0.3.21 picks its kernels from the CPU model and falls back to generic SSE3 ("Prescott", ~18 GFLOP/s on a
 * 2-core Sapphire Rapids) on models it does not know, such as recent Xeons. The choice is made when the library
 * loads, so unless the user set OPENBLAS_CORETYPE, name the kernel family the CPU flags support (SkylakeX: AVX-512,
 * ~105 GFLOP/s on one such core; Haswell: AVX2+FMA).
 */
function chooseCoreType(): void {
  if (process.env.OPENBLAS_CORETYPE || process.platform !== 'linux' || process.arch !== 'x64') return;
  let flags: Set<string>;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return;
  }
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512cd'].every((f) => flags.has(f))) process.env.OPENBLAS_CORETYPE = 'SkylakeX';
  else if (flags.has('avx2') && flags.has('fma')) process.env.OPENBLAS_CORETYPE = 'Haswell';
}

/**
 * OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each product before they sleep, on the cores the
 * engine's threads and V8's collector need between products. Unless the user set OPENBLAS_THREAD_TIMEOUT, they sleep
 * at once (2^4 cycles); read when the library loads. Measured (2 cores, 2 threads, 8 steps): the demo model's training
 * step 0.175-0.190 s -> 0.153-0.169 s, GPT-2 124M's 5.36 -> 4.98 s and its generation 110 -> 117 new tokens/s.
 */
function sleepIdleThreads(): void {
  if (!process.env.OPENBLAS_THREAD_TIMEOUT) process.env.OPENBLAS_THREAD_TIMEOUT = '4';
}

let addon: BlasAddon | null | undefined;
let loadError = '';
let offReason = '';

/** The built addon, or null (with `loadError` set) when it is not built or does not load. */
function requireAddon(): BlasAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const file = blasAddonPath();
  if (!existsSync(file)) {
    loadError = `not built (${BLAS_INSTALL_HINT})`;
    return null;
  }
  chooseCoreType();
  sleepIdleThreads();
  try {
    addon = createRequire(import.meta.url)(file) as BlasAddon;
  } catch (e) {
    loadError = `addon does not load (${String((e as Error)?.message ?? e).split('\n')[0]}; ${BLAS_INSTALL_HINT})`;
  }
  return addon;
}

/** Whether the addon is built and loads (regardless of RLHF_NATIVE_BLAS). */
export function nativeBlasAvailable(): boolean {
  return requireAddon() !== null;
}

/** The addon for other kernels (the packed frozen-weight products), or null when unbuilt or RLHF_NATIVE_BLAS=0. */
export function blasAddon(): Pick<BlasAddon, 'packedGemm'> | null {
  if (process.env[NATIVE_BLAS_ENV] === '0') return null;
  return requireAddon();
}

/** Threads: RLHF_BLAS_THREADS, else RLHF_THREADS, else the cores shared among the MPI ranks on this node, at least 1. */
export function blasThreads(env: NodeJS.ProcessEnv = process.env): number {
  // RLHF_THREADS (--threads) counts for OpenBLAS too unless RLHF_BLAS_THREADS is set.
  const raw = env[BLAS_THREADS_ENV] || env.RLHF_THREADS;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${BLAS_THREADS_ENV} must be a positive integer (got "${raw}")`);
    return n;
  }
  const ranks = Number(env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.MPI_LOCALNRANKS ?? 1);
  return Math.max(1, Math.floor(os.availableParallelism() / (Number.isInteger(ranks) && ranks > 0 ? ranks : 1)));
}

let installed = false;

/** "OpenBLAS sgemm (SkylakeX, 2 threads)" when installed, else why not. */
export function nativeBlasStatus(): string {
  if (installed && addon) {
    const core = /core=(\S+)/.exec(addon.config())?.[1] ?? '?';
    const n = configuredThreads; // small products drop to one thread for their call only
    return `OpenBLAS sgemm (${core}, ${n} thread${n > 1 ? 's' : ''})`;
  }
  return `OpenBLAS off: ${offReason || loadError || 'not installed on the wasm backend'}`;
}

export function nativeMatmulInstalled(): boolean {
  return installed;
}

// ---- the kernels ----

/** Per output batch dim, the step in matrices of an operand whose batch dims broadcast to `out` (0 where broadcast). */
function broadcastSteps(dims: number[], out: number[]): number[] {
  const own = rowMajorStrides(dims);
  const lead = out.length - dims.length;
  return out.map((_, j) => (j < lead || dims[j - lead] === 1 ? 0 : own[j - lead]!));
}

function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`matMul: batch dims [${a}] and [${b}] do not broadcast`);
    return Math.max(x, y);
  });
}

/**
 * Matrix index of an operand as a linear function of the output batch index i: i·k, with k = 0 (broadcast) or
 * 1 (same batch dims), or null when it is neither (a general broadcast, done one output matrix at a time).
 */
function linearStep(steps: number[], out: number[]): number | null {
  if (steps.every((s) => s === 0)) return 0;
  const full = rowMajorStrides(out);
  return steps.every((s, j) => s === full[j] || out[j] === 1) ? 1 : null;
}

/**
 * Fills out [..batch, M, N] with bias broadcast to it, so the product can be added on top (gemm with beta = 1).
 * Rows are copied whole when the bias has a full last dim, else set from its single column.
 */
function fillBias(out: Float32Array, outShape: number[], bias: Float32Array, biasShape: number[]): void {
  const rank = outShape.length;
  const N = outShape[rank - 1]!;
  const bshape = [...new Array<number>(rank - biasShape.length).fill(1), ...biasShape];
  const bstr = rowMajorStrides(bshape).map((s, j) => (bshape[j] === 1 ? 0 : s));
  const rows = out.length / N;
  const idx = new Array<number>(rank - 1).fill(0);
  const fullRow = bshape[rank - 1] === N && N > 1;
  if (fullRow && bstr.slice(0, rank - 1).every((st) => st === 0)) {
    // One bias row for every row (a linear layer's): copied once, then the filled part doubled (memmove).
    out.set(bias.subarray(0, N), 0);
    for (let filled = N; filled < out.length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
    return;
  }
  for (let r = 0; r < rows; r++) {
    let off = 0;
    for (let d = 0; d < rank - 1; d++) off += idx[d]! * bstr[d]!;
    if (fullRow) out.set(bias.subarray(off, off + N), r * N);
    else out.fill(bias[off]!, r * N, r * N + N);
    for (let d = rank - 2; d >= 0 && ++idx[d]! === outShape[d]!; d--) idx[d] = 0;
  }
}

/**
 * Products smaller than this many multiply-adds run on one OpenBLAS thread: waking a second thread costs more than
 * it saves there, and on a loaded machine much more (measured: a decode step's [16,192]·[192,512] took 9.7 ms with 2
 * threads, 1.2 ms with 1). Generation's per-token products are all this small; training's are not.
 */
export const SMALL_PRODUCT_MACS = 1 << 22;

let configuredThreads = 1;
let currentThreads = 1;

function useThreads(blas: BlasAddon, n: number): void {
  if (n === currentThreads) return;
  blas.setThreads(n);
  currentThreads = n;
}

/**
 * Threads for one call of another kernel into the addon whose sgemm calls are each about `macs` multiply-adds (the
 * packed products' per-tile calls): one thread below SMALL_PRODUCT_MACS, as for the products here. Only once the
 * wasm products are installed (the thread count is then this module's to manage).
 */
export function useBlasThreadsFor(macs: number): void {
  if (installed && addon) useThreads(addon, macs < SMALL_PRODUCT_MACS ? 1 : configuredThreads);
}

/** out = op(a)·op(b) (+ bias) with tf.matMul's shapes and broadcasting, computed in place by OpenBLAS. */
export function nativeProduct(
  blas: BlasAddon, backend: ProductMemory, a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean,
  bias: tf.TensorInfo | null,
): tf.TensorInfo {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [aRows, aCols] = [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const [bRows, bCols] = [b.shape[rb - 2]!, b.shape[rb - 1]!];
  const M = transA ? aCols : aRows;
  const K = transA ? aRows : aCols;
  const N = transB ? bRows : bCols;
  if ((transB ? bCols : bRows) !== K) {
    throw new Error(`matMul: inner dims of [${a.shape}] and [${b.shape}] (transposeA=${transA}, transposeB=${transB}) differ`);
  }
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const outBatch = broadcastShape(batchA, batchB);
  const outShape = [...outBatch, M, N];
  const rank = outShape.length;
  if (bias && (bias.shape.length > rank || bias.shape.some((d, i) => d !== 1 && d !== outShape[rank - bias.shape.length + i]))) {
    throw new Error(`fused matMul: bias [${bias.shape}] does not broadcast to the output [${outShape}]`);
  }
  const out = backend.makeOutput(outShape, 'float32');
  const batch = outBatch.reduce((x, y) => x * y, 1);
  if (batch * M * N === 0) return out;
  useThreads(blas, batch * M * N * K < SMALL_PRODUCT_MACS ? 1 : configuredThreads);
  // Views after makeOutput: growing the heap detaches views taken before.
  const A = backend.typedArrayFromHeap(a) as Float32Array;
  const B = backend.typedArrayFromHeap(b) as Float32Array;
  const C = backend.typedArrayFromHeap(out) as Float32Array;
  let beta = 0;
  if (bias) {
    fillBias(C, outShape, backend.typedArrayFromHeap(bias) as Float32Array, bias.shape);
    beta = 1;
  }
  const lda = Math.max(1, aCols);
  const ldb = Math.max(1, bCols);
  const [matA, matB, matC] = [aRows * aCols, bRows * bCols, M * N];
  const stepsA = broadcastSteps(batchA, outBatch);
  const stepsB = broadcastSteps(batchB, outBatch);
  const kA = linearStep(stepsA, outBatch);
  const kB = linearStep(stepsB, outBatch);
  if (kA !== null && kB !== null) {
    if (kB === 0 && kA === 1 && !transA) {
      // x[b, M, K] · w[K, N]: one product of all the rows (batch·M) against w.
      blas.gemm(false, transB, batch * M, N, K, A, 0, lda, B, 0, ldb, C, 0, N, 1, 0, 0, 0, beta);
    } else {
      blas.gemm(transA, transB, M, N, K, A, 0, lda, B, 0, ldb, C, 0, N, batch, kA * matA, kB * matB, matC, beta);
    }
    return out;
  }
  // General broadcast of the batch dims: one call per output matrix.
  const idx = new Array<number>(outBatch.length).fill(0);
  for (let i = 0; i < batch; i++) {
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < idx.length; d++) {
      ia += idx[d]! * stepsA[d]!;
      ib += idx[d]! * stepsB[d]!;
    }
    blas.gemm(transA, transB, M, N, K, A, ia * matA, lda, B, ib * matB, ldb, C, i * matC, N, 1, 0, 0, 0, beta);
    for (let d = idx.length - 1; d >= 0 && ++idx[d]! === outBatch[d]!; d--) idx[d] = 0;
  }
  return out;
}

export function applyRelu(x: Float32Array): void {
  for (let i = 0; i < x.length; i++) if (x[i]! < 0) x[i] = 0;
}

export type { BlasAddon };

/**
 * The addon for the native backend's products with `threads` OpenBLAS threads (RLHF_BLAS_THREADS overrides), or
 * the reason it is not usable.
 */
export function blasForEngine(threads: number): BlasAddon | string {
  if (process.env[NATIVE_BLAS_ENV] === '0') return `disabled by ${NATIVE_BLAS_ENV}=0`;
  const blas = requireAddon();
  if (!blas) return loadError;
  configuredThreads = process.env[BLAS_THREADS_ENV] ? blasThreads() : threads;
  blas.setThreads(configuredThreads);
  currentThreads = configuredThreads;
  return blas;
}

/** "OpenBLAS 0.3.21, SkylakeX, 2 threads" for the backend line. */
export function blasDescription(blas: BlasAddon): string {
  const config = blas.config();
  const version = /OpenBLAS\s+(\S+)/.exec(config)?.[1];
  const core = /core=(\S+)/.exec(config)?.[1] ?? '?';
  return `OpenBLAS${version ? ` ${version}` : ''}, ${core}, ${configuredThreads} thread${configuredThreads > 1 ? 's' : ''}`;
}

/** Whether N-API can hand the addon a pointer into the wasm heap (a SharedArrayBuffer when wasm runs threaded). */
function heapUsable(blas: BlasAddon, backend: WasmBackendLike): string {
  const buffer = backend.wasm.HEAPU8.buffer;
  if (!(buffer instanceof SharedArrayBuffer)) return '';
  try {
    const probe = new Float32Array(new SharedArrayBuffer(16));
    probe.set([1, 2, 3]);
    blas.gemm(false, false, 1, 1, 1, probe, 0, 1, probe, 1, 1, probe, 3, 1, 1, 0, 0, 0);
    return probe[3] === 2 ? '' : 'N-API read a shared wasm heap wrongly';
  } catch (e) {
    return `N-API cannot take a pointer into the shared (threaded) wasm heap: ${String((e as Error)?.message ?? e)}`;
  }
}

/**
 * Replaces the wasm backend's `BatchMatMul` and `_FusedMatMul` with OpenBLAS ones; anything they do not cover
 * (non-float32, prelu and other activations) goes to the stock kernel. Call after the wasm backend is initialised.
 * Returns whether the native products are now in use; `nativeBlasStatus()` says what or why not.
 */
export function installNativeMatmul(): boolean {
  if (installed) return true;
  if (process.env[NATIVE_BLAS_ENV] === '0') {
    offReason = `disabled by ${NATIVE_BLAS_ENV}=0`;
    return false;
  }
  const blas = requireAddon();
  if (!blas) {
    offReason = loadError;
    return false;
  }
  const backend = tf.findBackend('wasm') as unknown as WasmBackendLike | null;
  const stockBmm = tf.getKernel('BatchMatMul', 'wasm');
  const stockFused = tf.getKernel('_FusedMatMul', 'wasm');
  if (!backend || !stockBmm || !stockFused) {
    offReason = 'the wasm backend is not initialised';
    return false;
  }
  const why = heapUsable(blas, backend);
  if (why) {
    offReason = why;
    return false;
  }
  configuredThreads = blasThreads();
  blas.setThreads(configuredThreads);
  currentThreads = configuredThreads;

  const register = (stock: tf.KernelConfig, kernelFunc: tf.KernelFunc) => {
    tf.unregisterKernel(stock.kernelName, 'wasm');
    // The stock setupFunc is kept: the fallbacks call into what it prepares.
    tf.registerKernel({ kernelName: stock.kernelName, backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc });
  };
  register(stockBmm, (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stockBmm.kernelFunc(args);
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    return nativeProduct(blas, args.backend as unknown as WasmBackendLike, a, b, !!transposeA, !!transposeB, null);
  });
  register(stockFused, (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
    const act = activation ?? 'linear';
    if (a!.dtype !== 'float32' || b!.dtype !== 'float32' || (bias && bias.dtype !== 'float32') || preluActivationWeights ||
        (act !== 'linear' && act !== 'relu')) {
      return stockFused.kernelFunc(args);
    }
    const backend = args.backend as unknown as WasmBackendLike;
    const out = nativeProduct(blas, backend, a!, b!, !!transposeA, !!transposeB, bias ?? null);
    if (act === 'relu') applyRelu(backend.typedArrayFromHeap(out) as Float32Array);
    return out;
  });
  installed = true;
  return true;
}
