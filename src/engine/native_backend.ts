/**
 * The `native` backend: tfjs's cpu backend with its costly kernels replaced by multi-threaded C++ ones.
 *
 * Why a subclass of the cpu backend rather than a backend from scratch: tensors stay plain TypedArrays (their
 * ArrayBuffers live outside the V8 heap and outside any wasm heap, so there is no 4 GiB ceiling), the cpu backend's
 * ~170 kernels run on it unchanged (they only read `backend.data`), and each kernel that costs time is swapped for a
 * native one that reads and writes those arrays in place: products through OpenBLAS (native/blas), the rest through
 * native/engine (a std::thread pool). A kernel the native code does not cover (an odd dtype, a rare attribute)
 * falls back to the cpu kernel, so nothing is ever missing. The cpu backend itself is never touched: it is the
 * reference the self-test and the kernel tests compare against.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { tf } from './tf.js';
import { rowMajorStrides } from './shape.js';
import { applyRelu, blasDescription, blasForEngine, nativeProduct, type BlasAddon, type ProductMemory } from './native_blas.js';
import { fusedKernels, type FusedAddon, type FusedMemory } from './native_fused.js';

export const NATIVE_BACKEND = 'native';
/** Threads for the native kernels (and OpenBLAS unless RLHF_BLAS_THREADS is set); `--threads` sets it. */
export const THREADS_ENV = 'RLHF_THREADS';
export const ENGINE_INSTALL_HINT = 'a C++ compiler and libopenblas-dev, then npm run build:engine && npm run build:blas';

type Values = Float32Array | Int32Array | Uint8Array;

interface EngineAddon extends FusedAddon {
  binary(op: number, a: Values, aShape: number[], b: Values, bShape: number[], out: Values, outShape: number[]): void;
  unary(op: number, x: Float32Array, out: Float32Array, alpha?: number): void;
  reduce(op: number, x: Float32Array, pre: number, red: number, post: number, out: Float32Array): void;
  argReduce(op: number, x: Float32Array, pre: number, red: number, post: number, out: Int32Array): void;
  softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void;
  copy(src: Values, srcOffset: number, srcStrides: number[], dst: Values, dstOffset: number, dstStrides: number[], shape: number[], elemBytes: number): void;
  gather(x: Values, outer: number, n: number, inner: number, indices: Int32Array, out: Values, elemBytes: number): void;
  segmentSum(data: Float32Array, rows: number, inner: number, ids: Int32Array, out: Float32Array): void;
  setThreads(n: number): void;
  getThreads(): number;
}

/** src/engine and dist/engine both sit two levels below the root. */
export function engineAddonPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'engine', 'build', 'Release', 'rlhf_engine.node');
}

let addon: EngineAddon | null | undefined;
let loadError = '';

/** RLHF_NATIVE_ENGINE=0 keeps the native backend off even when built (`auto` then takes wasm). */
export const NATIVE_ENGINE_ENV = 'RLHF_NATIVE_ENGINE';

function requireEngine(): EngineAddon | null {
  if (process.env[NATIVE_ENGINE_ENV] === '0') {
    loadError = `disabled by ${NATIVE_ENGINE_ENV}=0`;
    return null;
  }
  if (addon !== undefined) return addon;
  addon = null;
  const file = engineAddonPath();
  if (!existsSync(file)) {
    loadError = `native/engine not built (${ENGINE_INSTALL_HINT})`;
    return null;
  }
  try {
    addon = createRequire(import.meta.url)(file) as EngineAddon;
  } catch (e) {
    loadError = `native/engine does not load (${String((e as Error)?.message ?? e).split('\n')[0]})`;
  }
  return addon;
}

/** Threads: `RLHF_THREADS`, else the cores shared among the MPI ranks on this node, at least 1. */
export function engineThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[THREADS_ENV];
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${THREADS_ENV} (or --threads) must be a positive integer (got "${raw}")`);
    return n;
  }
  const ranks = Number(env.OMPI_COMM_WORLD_LOCAL_SIZE ?? env.MPI_LOCALNRANKS ?? 1);
  return Math.max(1, Math.floor(os.availableParallelism() / (Number.isInteger(ranks) && ranks > 0 ? ranks : 1)));
}

/**
 * Output buffers of the native kernels, reused once no tensor views them. Every tensor is an ArrayBuffer that V8
 * frees only at a garbage collection; a training step turns over hundreds of MB of them, so V8 ran a full GC every
 * ~0.3 s for the external memory alone (tiny-chat, B8×T128), and each fresh buffer's pages faulted in again. Buffers
 * are counted per ArrayBuffer (views and aliases from the cpu kernels included, through `write`/`move`) and go back
 * to a free list, by size class, when the count drops to zero; reads hand out copies, so nothing outside the
 * backend keeps a view into a buffer that is reused. The free list holds at most POOL_BYTES; when a release would
 * pass it, the buffers free the longest go first (to the garbage collector), so the list follows the sizes the
 * current phase uses (generation, scoring, a training step each have their own) instead of keeping the first ones.
 */
export class BufferPool {
  /** Tensors viewing each pooled buffer (weak: a buffer dropped on an error path is simply collected). */
  private readonly live = new WeakMap<ArrayBuffer, number>();
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** The free buffers in the order they were released (oldest first), for eviction. */
  private readonly order = new Set<ArrayBuffer>();
  private freeBytes = 0;
  constructor(private readonly capBytes: number) {}

  /**
   * A buffer of at least `bytes`, in size classes a quarter-octave apart (≤ 25% unused), so a tensor that grows by a
   * little each step (a KV cache) still finds a free buffer.
   */
  take(bytes: number): ArrayBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.order.delete(reused);
      this.freeBytes -= size;
      this.live.set(reused, 0);
      return reused;
    }
    const b = Buffer.allocUnsafeSlow(size); // uninitialised: every native kernel writes all of its output
    const buffer = b.buffer as ArrayBuffer;
    this.live.set(buffer, 0);
    return buffer;
  }

  owns(buffer: ArrayBufferLike): boolean {
    return this.live.has(buffer as ArrayBuffer);
  }

  retain(buffer: ArrayBufferLike): void {
    const n = this.live.get(buffer as ArrayBuffer);
    if (n !== undefined) this.live.set(buffer as ArrayBuffer, n + 1);
  }

  release(buffer: ArrayBufferLike): void {
    const b = buffer as ArrayBuffer;
    const n = this.live.get(b);
    if (n === undefined) return;
    if (n > 1) {
      this.live.set(b, n - 1);
      return;
    }
    this.live.delete(b);
    if (b.byteLength > this.capBytes) return; // left to the garbage collector
    while (this.freeBytes + b.byteLength > this.capBytes) this.evictOldest();
    const list = this.free.get(b.byteLength) ?? [];
    list.push(b);
    this.free.set(b.byteLength, list);
    this.order.add(b);
    this.freeBytes += b.byteLength;
  }

  private evictOldest(): void {
    const old = this.order.values().next().value as ArrayBuffer;
    this.order.delete(old);
    const list = this.free.get(old.byteLength)!;
    list.splice(list.indexOf(old), 1);
    if (!list.length) this.free.delete(old.byteLength);
    this.freeBytes -= old.byteLength;
  }

  /** Buffers kept for reuse, in bytes. */
  pooledBytes(): number {
    return this.freeBytes;
  }

  clear(): void {
    this.free.clear();
    this.order.clear();
    this.freeBytes = 0;
  }
}

function sizeClass(bytes: number): number {
  const octave = 2 ** Math.floor(Math.log2(bytes));
  const step = Math.max(64, octave / 4);
  return Math.ceil(bytes / step) * step;
}

/**
 * Free-list ceiling: `RLHF_POOL_MB` MiB, else 1/64 of the RAM, at most 256 MiB: about one block's intermediates at
 * GPT-2 124M's PPO shapes. The former 1 GiB sat on top of every peak (PPO + LoRA on 124M: 1 of its 3 GiB RSS).
 */
export const POOL_ENV = 'RLHF_POOL_MB';
function poolBytes(): number {
  const raw = process.env[POOL_ENV];
  if (raw !== undefined && raw !== '') {
    const mb = Number(raw);
    if (!Number.isFinite(mb) || mb < 0) throw new Error(`${POOL_ENV} must be a number of MiB ≥ 0 (got "${raw}")`);
    return mb * 2 ** 20;
  }
  return Math.min(256 * 2 ** 20, Math.floor(os.totalmem() / 64));
}
const POOL_BYTES = poolBytes();
const pool = new BufferPool(POOL_BYTES);

type DataIdLike = object;

/** The cpu backend with buffer reuse (above); its kernels are swapped below. */
export class NativeBackend extends MathBackendCPU {
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): DataIdLike {
    const id = super.write(values, shape, dtype);
    if (ArrayBuffer.isView(values)) pool.retain(values.buffer);
    return id;
  }

  override move(dataId: DataIdLike, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    const old = this.data.get(dataId)?.values;
    super.move(dataId, values, shape, dtype, refCount);
    if (ArrayBuffer.isView(values)) pool.retain(values.buffer);
    if (old && ArrayBuffer.isView(old)) pool.release(old.buffer);
  }

  override disposeData(dataId: DataIdLike, force = false): boolean {
    const values = this.data.get(dataId)?.values;
    const freed = super.disposeData(dataId, force);
    if (freed && values && ArrayBuffer.isView(values) && !this.data.has(dataId)) pool.release(values.buffer);
    return freed;
  }

  /** A copy when the values lie in a reusable buffer: a caller may keep what dataSync() returned forever. */
  override readSync(dataId: DataIdLike): tf.backend_util.BackendValues {
    const v = super.readSync(dataId);
    return ArrayBuffer.isView(v) && pool.owns(v.buffer) ? (v as Float32Array | Int32Array | Uint8Array).slice() : v;
  }

  override dispose(): void {
    super.dispose();
    pool.clear();
  }
}

/** Bytes the native backend keeps for reuse (not counted by tf.memory()). */
export function nativePooledBytes(): number {
  return pool.pooledBytes();
}

// ---- helpers over the backend's arrays ----

/**
 * The array behind a tensor when it is the one its dtype implies (float32: Float32Array, int32: Int32Array, bool:
 * Uint8Array), else null and the kernel falls back to the cpu one: cpu kernels sometimes store another array type
 * (a cast from bool keeps its bytes), and the native kernels move elements of a fixed size.
 */
function valuesOf(backend: NativeBackend, t: tf.TensorInfo): Values | null {
  const v = backend.data.get(t.dataId)?.values;
  if (t.dtype === 'float32') return v instanceof Float32Array ? v : null;
  if (t.dtype === 'int32') return v instanceof Int32Array ? v : null;
  if (t.dtype === 'bool') return v instanceof Uint8Array ? v : null;
  return null;
}

function floats(backend: NativeBackend, t: tf.TensorInfo): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const v = valuesOf(backend, t);
  return v instanceof Float32Array ? v : null;
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Below this many elements outputs are ordinary zeroed arrays; above, pooled uninitialised buffers, as every native
 * kernel writes each element of its output (zeroing 26 MB of logits first cost as much as the kernel).
 */
const UNINITIALISED_FROM = 4096;

function allocate(dtype: tf.DataType, n: number): Values {
  if ((dtype === 'float32' || dtype === 'int32') && n >= UNINITIALISED_FROM) {
    const b = pool.take(4 * n);
    return dtype === 'float32' ? new Float32Array(b, 0, n) : new Int32Array(b, 0, n);
  }
  if (dtype === 'float32') return new Float32Array(n);
  if (dtype === 'int32') return new Int32Array(n);
  if (dtype === 'bool') return new Uint8Array(n);
  throw new Error(`native backend: no storage for dtype ${dtype}`);
}

function output(backend: NativeBackend, shape: number[], dtype: tf.DataType): { info: tf.TensorInfo; values: Values } {
  const values = allocate(dtype, size(shape));
  return { info: backend.makeTensorInfo(shape, dtype, values), values };
}

/** Bytes per element of a dtype the copy kernels move (4: float32/int32, 1: bool), or 0 for others. */
function elemBytes(dtype: tf.DataType): number {
  return dtype === 'float32' || dtype === 'int32' ? 4 : dtype === 'bool' ? 1 : 0;
}

function broadcastShape(a: number[], b: number[]): number[] {
  return tf.backend_util.assertAndGetBroadcastShape(a, b);
}

/** Whether permuting `shape` by `perm` leaves the row-major order of the elements as it is. */
export function keepsOrder(shape: number[], perm: number[]): boolean {
  const moved = perm.filter((p) => shape[p]! !== 1);
  return moved.every((p, i) => i === 0 || p > moved[i - 1]!);
}

/** x copied with its axes permuted (any 1- or 4-byte dtype). */
function transposeValues(engine: EngineAddon, x: Values, shape: number[], perm: number[], dtype: tf.DataType): Values {
  const outShape = perm.map((p) => shape[p]!);
  const out = allocate(dtype, x.length);
  const strides = rowMajorStrides(shape);
  engine.copy(x, 0, perm.map((p) => strides[p]!), out, 0, rowMajorStrides(outShape), outShape, elemBytes(dtype));
  return out;
}

// ---- the kernels ----

const BINARY: Record<string, number> = {
  Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, Pow: 6, SquaredDifference: 7,
  Equal: 8, NotEqual: 9, Less: 10, LessEqual: 11, Greater: 12, GreaterEqual: 13,
};

const UNARY: Record<string, number> = {
  Exp: 0, Log: 1, Sqrt: 2, Rsqrt: 3, Tanh: 4, Sigmoid: 5, Erf: 6, Neg: 7, Abs: 8, Relu: 9, Square: 10, Reciprocal: 11,
  Sin: 12, Cos: 13, Log1p: 14, Softplus: 15, Floor: 16, Ceil: 17, Sign: 18, Expm1: 19, Elu: 20, Relu6: 21, Step: 22,
};

const REDUCE: Record<string, { op: number; axisAttr: string }> = {
  Sum: { op: 0, axisAttr: 'axis' }, Mean: { op: 1, axisAttr: 'axis' }, Max: { op: 2, axisAttr: 'reductionIndices' },
  Min: { op: 3, axisAttr: 'axis' }, Prod: { op: 4, axisAttr: 'axis' },
};

type Fallback = tf.KernelFunc;
type NativeKernel = (args: tf.NamedAttrMap & { inputs: tf.NamedTensorInfoMap; backend: NativeBackend; attrs: tf.NamedAttrMap }, fallback: Fallback) => tf.TensorInfo | tf.TensorInfo[];

/** [pre, red, post] of a reduction over `axes`, after moving them last when they are not one block. */
function reductionPlan(engine: EngineAddon, x: Float32Array, shape: number[], axes: number[]): { data: Float32Array; pre: number; red: number; post: number } {
  const sorted = [...axes].sort((a, b) => a - b);
  const contiguous = sorted.every((a, i) => i === 0 || a === sorted[i - 1]! + 1);
  if (contiguous && sorted.length > 0) {
    const first = sorted[0]!;
    const last = sorted[sorted.length - 1]!;
    return { data: x, pre: size(shape.slice(0, first)), red: size(shape.slice(first, last + 1)), post: size(shape.slice(last + 1)) };
  }
  const kept = shape.map((_, i) => i).filter((i) => !sorted.includes(i));
  const perm = [...kept, ...sorted];
  const data = transposeValues(engine, x, shape, perm, 'float32') as Float32Array;
  return { data, pre: size(kept.map((i) => shape[i]!)), red: size(sorted.map((i) => shape[i]!)), post: 1 };
}

function sliceInto(engine: EngineAddon, backend: NativeBackend, x: tf.TensorInfo, xv: Values, begin: number[], sz: number[]): tf.TensorInfo {
  const { info, values } = output(backend, sz, x.dtype);
  if (values.length === 0) return info;
  const strides = rowMajorStrides(x.shape);
  const offset = begin.reduce((s, b, i) => s + b * strides[i]!, 0);
  engine.copy(xv, offset, strides, values, 0, rowMajorStrides(sz), sz, elemBytes(x.dtype));
  return info;
}

function makeKernels(engine: EngineAddon, blas: BlasAddon): Record<string, NativeKernel> {
  const kernels: Record<string, NativeKernel> = {};

  for (const [name, op] of Object.entries(BINARY)) {
    kernels[name] = ({ inputs, backend }, fallback) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const av = floats(backend, a);
      const bv = floats(backend, b);
      if (!av || !bv) return fallback({ inputs, backend, attrs: {} });
      const outShape = broadcastShape(a.shape, b.shape);
      const { info, values } = output(backend, outShape, op >= 8 ? 'bool' : 'float32');
      engine.binary(op, av, a.shape, bv, b.shape, values, outShape);
      return info;
    };
  }

  for (const [name, op] of Object.entries(UNARY)) {
    kernels[name] = ({ inputs, backend, attrs }, fallback) => {
      const x = inputs.x as tf.TensorInfo;
      const xv = floats(backend, x);
      if (!xv) return fallback({ inputs, backend, attrs });
      const { info, values } = output(backend, x.shape, 'float32');
      engine.unary(op, xv, values as Float32Array, Number(attrs?.alpha ?? 0));
      return info;
    };
  }

  for (const [name, { op, axisAttr }] of Object.entries(REDUCE)) {
    kernels[name] = ({ inputs, backend, attrs }, fallback) => {
      const x = inputs.x as tf.TensorInfo;
      const xv = floats(backend, x);
      if (!xv) return fallback({ inputs, backend, attrs });
      const axes = tf.util.parseAxisParam(attrs[axisAttr] as number | number[], x.shape);
      const keepDims = !!attrs.keepDims;
      const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      if (axes.length === 0) {
        // Nothing reduced: the values unchanged (Sum/Max/... over no axis), as a copy.
        return backend.makeTensorInfo(outShape, 'float32', xv.slice());
      }
      const { info, values } = output(backend, outShape, 'float32');
      const plan = reductionPlan(engine, xv, x.shape, axes);
      engine.reduce(op, plan.data, plan.pre, plan.red, plan.post, values as Float32Array);
      if (plan.data !== xv) pool.release(plan.data.buffer); // the transposed temporary
      return info;
    };
  }

  for (const [name, op] of [['ArgMax', 0], ['ArgMin', 1]] as const) {
    kernels[name] = ({ inputs, backend, attrs }, fallback) => {
      const x = inputs.x as tf.TensorInfo;
      const xv = floats(backend, x);
      if (!xv) return fallback({ inputs, backend, attrs });
      const [axis] = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const outShape = x.shape.filter((_, i) => i !== axis);
      const { info, values } = output(backend, outShape, 'int32');
      engine.argReduce(op, xv, size(x.shape.slice(0, axis)), x.shape[axis!]!, size(x.shape.slice(axis! + 1)), values as Int32Array);
      return info;
    };
  }

  kernels.Softmax = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.logits as tf.TensorInfo;
    const xv = floats(backend, x);
    const rank = x.shape.length;
    const dim = (attrs.dim as number) < 0 ? (attrs.dim as number) + rank : (attrs.dim as number);
    if (!xv || rank === 0 || dim !== rank - 1) return fallback({ inputs, backend, attrs });
    const { info, values } = output(backend, x.shape, 'float32');
    const cols = x.shape[rank - 1]!;
    engine.softmax(xv, cols === 0 ? 0 : xv.length / cols, cols, values as Float32Array, false);
    return info;
  };

  // The cpu backend's Cast to a wider type keeps the array (an int32 or bool cast to float32 is still an Int32Array or
  // Uint8Array underneath), so every native kernel downstream fell back to JavaScript (tiny-chat's rotary angles:
  // 1.9 ms for one [8, 128, 16] product). Here such casts write the array their dtype implies.
  kernels.Cast = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.x as tf.TensorInfo;
    const dtype = attrs.dtype as tf.DataType;
    const v = backend.data.get(x.dataId)?.values;
    const widens = (dtype === 'float32' && (x.dtype === 'int32' || x.dtype === 'bool')) || (dtype === 'int32' && x.dtype === 'bool');
    if (!widens || !(v instanceof Int32Array || v instanceof Uint8Array)) return fallback({ inputs, backend, attrs });
    const { info, values } = output(backend, x.shape, dtype);
    values.set(v);
    return info;
  };

  kernels.Transpose = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.x as tf.TensorInfo;
    const xv = valuesOf(backend, x);
    if (!xv || elemBytes(x.dtype) === 0) return fallback({ inputs, backend, attrs });
    const perm = attrs.perm as number[];
    const outShape = perm.map((p) => x.shape[p]!);
    if (keepsOrder(x.shape, perm)) {
      // The elements stay in the same order (only axes of size 1 move, or none: tfjs's gather gradient transposes
      // by the identity): a reshape, sharing the values as the cpu backend's Reshape does.
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
    }
    return backend.makeTensorInfo(outShape, x.dtype, transposeValues(engine, xv, x.shape, perm, x.dtype));
  };

  kernels.Slice = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.x as tf.TensorInfo;
    const xv = valuesOf(backend, x);
    if (!xv || elemBytes(x.dtype) === 0) return fallback({ inputs, backend, attrs });
    const [begin, sz] = tf.slice_util.parseSliceParams(x, attrs.begin as number[], attrs.size as number[]);
    tf.slice_util.assertParamsValid(x, begin!, sz!);
    return sliceInto(engine, backend, x, xv, begin!, sz!);
  };

  kernels.SplitV = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.x as tf.TensorInfo;
    const xv = valuesOf(backend, x);
    if (!xv || elemBytes(x.dtype) === 0) return fallback({ inputs, backend, attrs });
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x, attrs.numOrSizeSplits as number | number[], axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const sz = [...x.shape];
      sz[axis] = s;
      const out = sliceInto(engine, backend, x, xv, [...begin], sz);
      begin[axis]! += s;
      return out;
    });
  };

  kernels.Unpack = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.value as tf.TensorInfo;
    const xv = valuesOf(backend, x);
    if (!xv || elemBytes(x.dtype) === 0) return fallback({ inputs, backend, attrs });
    let axis = attrs.axis as number;
    if (axis < 0) axis += x.shape.length;
    const outShape = x.shape.filter((_, i) => i !== axis);
    const sz = [...x.shape];
    sz[axis] = 1;
    return Array.from({ length: x.shape[axis]! }, (_, i) => {
      const begin = new Array<number>(x.shape.length).fill(0);
      begin[axis] = i;
      const out = sliceInto(engine, backend, x, xv, begin, sz);
      return { ...out, shape: outShape };
    });
  };

  kernels.Concat = ({ inputs, backend, attrs }, fallback) => {
    const list = Object.values(inputs) as tf.TensorInfo[];
    const dtype = list[0]?.dtype;
    if (!dtype || elemBytes(dtype) === 0 || list.some((t) => t.dtype !== dtype || !valuesOf(backend, t))) return fallback({ inputs, backend, attrs });
    const axis = tf.util.parseAxisParam(attrs.axis as number, list[0]!.shape)[0]!;
    const outShape = tf.backend_util.computeOutShape(list.map((t) => t.shape), axis);
    const { info, values } = output(backend, outShape, dtype);
    const outStrides = rowMajorStrides(outShape);
    let at = 0;
    for (const t of list) {
      const n = size(t.shape);
      if (n > 0) engine.copy(valuesOf(backend, t)!, 0, rowMajorStrides(t.shape), values, at * (outStrides[axis] ?? 1), outStrides, t.shape, elemBytes(dtype));
      at += t.shape[axis] ?? 0;
    }
    return info;
  };

  kernels.PadV2 = ({ inputs, backend, attrs }, fallback) => {
    const x = inputs.x as tf.TensorInfo;
    const xv = valuesOf(backend, x);
    if (!xv || elemBytes(x.dtype) === 0) return fallback({ inputs, backend, attrs });
    const paddings = attrs.paddings as [number, number][];
    const outShape = x.shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
    const { info, values } = output(backend, outShape, x.dtype);
    values.fill(Number(attrs.constantValue ?? 0));
    const outStrides = rowMajorStrides(outShape);
    if (xv.length > 0) {
      engine.copy(xv, 0, rowMajorStrides(x.shape), values, paddings.reduce((s, p, i) => s + p[0] * outStrides[i]!, 0), outStrides, x.shape, elemBytes(x.dtype));
    }
    return info;
  };

  kernels.GatherV2 = ({ inputs, backend, attrs }, fallback) => {
    const { x, indices } = inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
    const xv = valuesOf(backend, x);
    const iv = valuesOf(backend, indices);
    const batchDims = (attrs.batchDims as number | undefined) ?? 0;
    if (!xv || !(iv instanceof Int32Array) || elemBytes(x.dtype) === 0 || batchDims !== 0) return fallback({ inputs, backend, attrs });
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]!;
    const outShape = [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)];
    const { info, values } = output(backend, outShape, x.dtype);
    engine.gather(xv, size(x.shape.slice(0, axis)), x.shape[axis]!, size(x.shape.slice(axis + 1)), iv, values, elemBytes(x.dtype));
    return info;
  };

  kernels.UnsortedSegmentSum = ({ inputs, backend, attrs }, fallback) => {
    const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
    const xv = floats(backend, x);
    const iv = valuesOf(backend, segmentIds);
    const k = segmentIds.shape.length;
    if (!xv || !(iv instanceof Int32Array) || !segmentIds.shape.every((d, i) => d === x.shape[i])) return fallback({ inputs, backend, attrs });
    const inner = x.shape.slice(k);
    const { info, values } = output(backend, [attrs.numSegments as number, ...inner], 'float32');
    values.fill(0);
    engine.segmentSum(xv, size(segmentIds.shape), size(inner), iv, values as Float32Array);
    return info;
  };

  // Products: OpenBLAS on the backend's arrays (native_blas.ts holds the broadcasting and batching).
  const memoryOf = (backend: NativeBackend): ProductMemory => ({
    makeOutput: (shape, dtype) => output(backend, shape, dtype).info,
    typedArrayFromHeap: (t) => valuesOf(backend, t)!,
  });
  kernels.BatchMatMul = ({ inputs, backend, attrs }, fallback) => {
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (!floats(backend, a) || !floats(backend, b)) return fallback({ inputs, backend, attrs });
    return nativeProduct(blas, memoryOf(backend), a, b, !!attrs.transposeA, !!attrs.transposeB, null);
  };
  kernels._FusedMatMul = ({ inputs, backend, attrs }, fallback) => {
    const { a, b, bias, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined>;
    const act = (attrs.activation as string | undefined) ?? 'linear';
    if (!floats(backend, a!) || !floats(backend, b!) || (bias && !floats(backend, bias)) || preluActivationWeights || (act !== 'linear' && act !== 'relu')) {
      return fallback({ inputs, backend, attrs });
    }
    const out = nativeProduct(blas, memoryOf(backend), a!, b!, !!attrs.transposeA, !!attrs.transposeB, bias ?? null);
    if (act === 'relu') applyRelu(valuesOf(backend, out) as Float32Array);
    return out;
  };
  return kernels;
}

/** The fused kernels' access to the backend's arrays. */
function fusedMemory(backend: NativeBackend): FusedMemory {
  return {
    floats: (t) => {
      const v = backend.data.get(t.dataId)?.values;
      return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
    },
    ints: (t) => {
      const v = backend.data.get(t.dataId)?.values;
      return v instanceof Int32Array ? v : Int32Array.from(v as ArrayLike<number>);
    },
    output: (shape) => {
      const { info, values } = output(backend, shape, 'float32');
      return { info, values: values as Float32Array };
    },
    view: (shape, values) => backend.makeTensorInfo(shape, 'float32', values),
  };
}

/** Names of the kernels the native code implements (the rest run the cpu backend's JavaScript). */
export function nativeKernelNames(): string[] {
  return [...Object.keys(BINARY), ...Object.keys(UNARY), ...Object.keys(REDUCE), 'ArgMax', 'ArgMin', 'Softmax', 'Cast', 'Transpose', 'Slice',
    'SplitV', 'Unpack', 'Concat', 'PadV2', 'GatherV2', 'UnsortedSegmentSum', 'BatchMatMul', '_FusedMatMul'];
}

let registered = false;
let description = '';

/**
 * Registers the `native` backend with tfjs (every cpu kernel, then the native ones over them) and returns its
 * description, "native (2 threads, OpenBLAS 0.3.21, SkylakeX, 2 threads)"; throws with the reason when the addons
 * are not built. Idempotent.
 */
export function registerNativeBackend(threads = engineThreads()): string {
  if (registered) {
    addon!.setThreads(threads);
    return description;
  }
  const engine = requireEngine();
  if (!engine) throw new Error(loadError);
  const blas = blasForEngine(threads);
  if (typeof blas === 'string') throw new Error(`OpenBLAS addon: ${blas}`);
  engine.setThreads(threads);
  const natives = makeKernels(engine, blas);
  for (const config of tf.getKernelsForBackend('cpu')) {
    const own = natives[config.kernelName];
    const cpuFunc = config.kernelFunc;
    const kernelFunc: tf.KernelFunc = own ? (args) => own(args as Parameters<NativeKernel>[0], cpuFunc) : cpuFunc;
    tf.registerKernel({ ...config, backendName: NATIVE_BACKEND, kernelFunc });
  }
  // The fused kernels exist on this backend only (the ops choose them through fusedKernel()).
  for (const [kernelName, own] of Object.entries(fusedKernels(engine))) {
    tf.registerKernel({
      kernelName, backendName: NATIVE_BACKEND,
      kernelFunc: ({ inputs, attrs, backend }) => own({ inputs, attrs: attrs ?? {} }, fusedMemory(backend as NativeBackend)),
    });
  }
  // Priority below cpu's: tfjs never picks it on its own, only initBackend does.
  tf.registerBackend(NATIVE_BACKEND, () => new NativeBackend(), 0);
  registered = true;
  const n = engine.getThreads();
  description = `native (${n} thread${n > 1 ? 's' : ''}, ${blasDescription(blas)})`;
  return description;
}

/** Why the native backend cannot be registered here, or '' when it can. */
export function nativeBackendUnavailable(): string {
  if (!requireEngine()) return loadError;
  return '';
}

/** Sets the native kernels' threads (after registration). */
export function setEngineThreads(n: number): void {
  requireEngine()?.setThreads(n);
}
