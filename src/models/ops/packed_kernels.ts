/**
 * The kernels behind packed frozen weights (packed_weight.ts): `RlhfPackedMatMul` (x · W or x · Wᵀ, W expanded a
 * tile of rows at a time) and `RlhfPackedGather` (embedding rows expanded as they are gathered). Products go to the
 * OpenBLAS addon's `packedGemm` when it is built, else to the JS loops here, which tile the same way; neither makes
 * a float32 copy of W.
 *
 * The kernels work on any backend whose tensors live in host memory, given how to reach a tensor's typed array:
 * `registerPackedKernels(backendName, access)`. cpu and wasm are registered on first use; a backend with tensors
 * as JS typed arrays (a MathBackendCPU subclass) registers with `CPU_ACCESS`.
 */
import { tf } from '../../engine/tf.js';
import { blasAddon, useBlasThreadsFor } from '../../engine/native_blas.js';
import { expandRows, FORMAT_CODE, type PackedArrays, type PackedFormat } from './packed_weight.js';

export const PACKED_MATMUL = 'RlhfPackedMatMul';
export const PACKED_GATHER = 'RlhfPackedGather';

type HostArray = Float32Array | Int32Array | Uint8Array;

/** How a kernel reaches tensors of one backend: a new output, and a view of a tensor's values. */
export interface HostTensorAccess {
  alloc(backend: unknown, shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
  /** A view of the values in place; taken after every `alloc` (a growing wasm heap detaches older views). */
  view(backend: unknown, t: tf.TensorInfo): HostArray;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): HostArray;
}
interface CpuBackendLike {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: HostArray): tf.TensorInfo;
  data: { get(id: object): { values: HostArray } };
}

export const WASM_ACCESS: HostTensorAccess = {
  alloc: (b, shape, dtype) => (b as unknown as WasmBackendLike).makeOutput(shape, dtype),
  view: (b, t) => (b as unknown as WasmBackendLike).typedArrayFromHeap(t),
};

export const CPU_ACCESS: HostTensorAccess = {
  alloc: (b, shape, dtype) => {
    const n = shape.reduce((x, y) => x * y, 1);
    return (b as unknown as CpuBackendLike).makeTensorInfo(shape, dtype, dtype === 'int32' ? new Int32Array(n) : new Float32Array(n));
  },
  view: (b, t) => (b as unknown as CpuBackendLike).data.get(t.dataId).values,
};

/** 'auto': the addon's packedGemm when built (and RLHF_NATIVE_BLAS is not 0), else JS; 'js' forces the JS loops. */
let impl: 'auto' | 'js' = 'auto';
export function setPackedProductImpl(which: 'auto' | 'js'): void {
  impl = which;
}

/** Which implementation a packed product runs now: "openblas" or "js". */
export function packedProductImpl(): 'openblas' | 'js' {
  const a = impl === 'auto' ? blasAddon() : null;
  return a && typeof a.packedGemm === 'function' ? 'openblas' : 'js';
}

/** Rows of W expanded per tile: ~64k floats (256 KiB), as the native kernel. */
function tileRows(R: number, C: number): number {
  return Math.max(1, Math.min(R, Math.floor(65536 / Math.max(1, C))));
}

/** Y = X[N, R] · W (transW false) or X[N, C] · Wᵀ (transW true), in JS, a tile of W's rows at a time. */
export function jsPackedProduct(p: PackedArrays, transW: boolean, X: Float32Array, N: number, Y: Float32Array): void {
  const { R, C } = p;
  const tr = tileRows(R, C);
  const tile = new Float32Array(tr * C);
  if (!transW) Y.fill(0, 0, N * C);
  for (let r0 = 0; r0 < R; r0 += tr) {
    const r1 = Math.min(R, r0 + tr);
    expandRows(p, r0, r1, tile);
    for (let n = 0; n < N; n++) {
      if (!transW) {
        const yo = n * C;
        for (let r = r0; r < r1; r++) {
          const a = X[n * R + r]!;
          if (a === 0) continue;
          const to = (r - r0) * C;
          for (let c = 0; c < C; c++) Y[yo + c] += a * tile[to + c]!;
        }
      } else {
        const xo = n * C;
        for (let r = r0; r < r1; r++) {
          const to = (r - r0) * C;
          let s = 0;
          for (let c = 0; c < C; c++) s += X[xo + c]! * tile[to + c]!;
          Y[n * R + r] = s;
        }
      }
    }
  }
}

interface PackedAttrs {
  format: PackedFormat;
  R: number;
  C: number;
  channelAxis: 0 | 1;
  transW?: boolean;
}

function arraysOf(access: HostTensorAccess, backend: unknown, a: PackedAttrs, data: tf.TensorInfo, scales: tf.TensorInfo | undefined): PackedArrays {
  return {
    format: a.format, R: a.R, C: a.C, channelAxis: a.channelAxis,
    words: access.view(backend, data) as Int32Array,
    scales: scales ? (access.view(backend, scales) as Float32Array) : null,
  };
}

const registered = new Set<string>();

/** Registers both kernels for `backendName`; idempotent. */
export function registerPackedKernels(backendName: string, access: HostTensorAccess): void {
  if (registered.has(backendName)) return;
  tf.registerKernel({
    kernelName: PACKED_MATMUL,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, data, scales } = inputs as { x: tf.TensorInfo; data: tf.TensorInfo; scales?: tf.TensorInfo };
      const a = attrs as unknown as PackedAttrs;
      const transW = !!a.transW;
      const [N, K] = x.shape as [number, number];
      if (x.shape.length !== 2 || K !== (transW ? a.C : a.R)) {
        throw new Error(`${PACKED_MATMUL}: x [${x.shape}] does not fit a packed [${a.R}, ${a.C}] weight${transW ? ' (transposed)' : ''}`);
      }
      const out = access.alloc(backend, [N, transW ? a.R : a.C], 'float32');
      // Views after the allocation.
      const X = access.view(backend, x) as Float32Array;
      const Y = access.view(backend, out) as Float32Array;
      const p = arraysOf(access, backend, a, data, scales);
      const addon = impl === 'auto' ? blasAddon() : null;
      if (addon && typeof addon.packedGemm === 'function') {
        useBlasThreadsFor(N * Math.min(a.R * a.C, 65536)); // each tile's sgemm: N × ~64k multiply-adds
        addon.packedGemm(FORMAT_CODE[a.format], transW, N, a.R, a.C, X, p.words, p.scales, a.channelAxis, Y);
      } else jsPackedProduct(p, transW, X, N, Y);
      return out;
    },
  });
  tf.registerKernel({
    kernelName: PACKED_GATHER,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { ids, data, scales } = inputs as { ids: tf.TensorInfo; data: tf.TensorInfo; scales?: tf.TensorInfo };
      const a = attrs as unknown as PackedAttrs;
      const n = ids.shape.reduce((x, y) => x * y, 1);
      const out = access.alloc(backend, [n, a.C], 'float32');
      const I = access.view(backend, ids) as Int32Array;
      const Y = access.view(backend, out) as Float32Array;
      const p = arraysOf(access, backend, a, data, scales);
      for (let i = 0; i < n; i++) {
        const id = I[i]!;
        if (!(id >= 0 && id < a.R)) throw new Error(`embedding: token id ${id} is outside the vocabulary of ${a.R} rows`);
        expandRows(p, id, id + 1, Y.subarray(i * a.C, (i + 1) * a.C));
      }
      return out;
    },
  });
  registered.add(backendName);
}

/** Registers the kernels for the active backend when it is a host-memory one; otherwise says what is missing. */
export function ensurePackedKernels(): void {
  const name = tf.getBackend();
  if (registered.has(name)) return;
  if (name === 'wasm') registerPackedKernels(name, WASM_ACCESS);
  else if (name === 'cpu' || name === 'native') registerPackedKernels(name, CPU_ACCESS); // native: a MathBackendCPU subclass
  else if (!tf.getKernel(PACKED_MATMUL, name)) {
    throw new Error(`frozen weights in bf16/int8/nf4 need the cpu or wasm backend (or kernels registered with registerPackedKernels); the backend is ${name}: use --frozen_dtype float32 there`);
  }
}
