/**
 * Kernel replacements for the wasm backend, installed once the backend is loaded. Each one does what the stock
 * kernel does, without a needless copy of its input:
 *
 * - `Identity`: tfjs clones every tensor it saves for the backward pass (and every tensor a `tf.customGrad` saves)
 *   through Identity. The cpu backend shares the buffer (a reference count); the wasm backend copied it, doubling
 *   the memory held by saved activations. Tensors are immutable and the wasm backend counts references (its Reshape
 *   already shares buffers), so Identity shares too.
 * - `Slice`, `SplitV`, `Unpack`: the stock kernels first copy the *whole* input out of the wasm heap (`readSync`)
 *   for every slice, so taking one 6 MiB chunk of a 77 MiB matrix cost a 77 MiB copy, and unstacking 12 heads cost
 *   12 copies of all of them. These read the input in place through a heap view.
 */
import { tf } from '../../engine/tf.js';
import { rowMajorStrides } from '../../engine/shape.js';

type TypedArray = Float32Array | Int32Array | Uint8Array;
interface WasmBackendLike {
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): TypedArray;
}

/** Copies x[begin : begin + size] into a new tensor, one contiguous run at a time. */
function sliceInHeap(backend: WasmBackendLike, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  const n = size.reduce((a, b) => a * b, 1);
  if (n === 0) return out;
  // Views are taken after makeOutput: growing the heap detaches earlier views.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  const xs = rowMajorStrides(x.shape);
  // The innermost axes taken whole (plus the first partial one) form one contiguous run.
  let inner = rank - 1;
  while (inner > 0 && size[inner] === x.shape[inner]) inner--;
  const run = size.slice(inner).reduce((a, b) => a * b, 1);
  const idx = begin.slice(0, inner);
  let o = 0;
  for (;;) {
    let off = begin[inner]! * xs[inner]!;
    for (let d = 0; d < inner; d++) off += idx[d]! * xs[d]!;
    if (run >= 16) dst.set(src.subarray(off, off + run), o);
    else for (let k = 0; k < run; k++) dst[o + k] = src[off + k]!;
    o += run;
    if (o >= n) break;
    // Next index over the outer axes (odometer).
    let d = inner - 1;
    while (d >= 0 && ++idx[d]! === begin[d]! + size[d]!) {
      idx[d] = begin[d]!;
      d--;
    }
  }
  return out;
}

function normaliseSlice(shape: number[], begin: number[], size: number[]): number[] {
  return size.map((s, i) => (s === -1 ? shape[i]! - begin[i]! : s));
}

let installed = false;

function override(kernelName: string, kernelFunc: tf.KernelFunc): void {
  tf.unregisterKernel(kernelName, 'wasm');
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
}

/** Idempotent and cheap: safe to call at the start of every forward pass. */
export function installKernelOverrides(): void {
  if (installed || !tf.getKernel('Identity', 'wasm')) return;
  installed = true;

  override('Identity', ({ inputs, backend }) => {
    const x = inputs.x as tf.TensorInfo;
    (backend as unknown as WasmBackendLike).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });

  const stockSlice = tf.getKernel('Slice', 'wasm')!.kernelFunc;
  override('Slice', (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string') return stockSlice(args);
    const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
    const b = typeof begin === 'number' ? [begin, ...new Array<number>(x.shape.length - 1).fill(0)] : [...begin];
    const s = typeof size === 'number' ? [size, ...x.shape.slice(1)] : [...size];
    while (b.length < x.shape.length) b.push(0);
    while (s.length < x.shape.length) s.push(-1);
    return sliceInHeap(args.backend as unknown as WasmBackendLike, x, b, normaliseSlice(x.shape, b, s));
  });

  const stockSplit = tf.getKernel('SplitV', 'wasm')!.kernelFunc;
  override('SplitV', (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    if (x.dtype === 'string') return stockSplit(args);
    const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const sizes = typeof numOrSizeSplits === 'number'
      ? new Array<number>(numOrSizeSplits).fill(x.shape[ax]! / numOrSizeSplits)
      : numOrSizeSplits.map((s, _, all) => (s === -1 ? x.shape[ax]! - all.reduce((a, v) => a + (v === -1 ? 0 : v), 0) : s));
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const out = sliceInHeap(args.backend as unknown as WasmBackendLike, x, [...begin], size);
      begin[ax]! += s;
      return out;
    });
  });

  const stockUnpack = tf.getKernel('Unpack', 'wasm')!.kernelFunc;
  override('Unpack', (args) => {
    const x = args.inputs.value as tf.TensorInfo;
    if (x.dtype === 'string') return stockUnpack(args);
    let { axis } = args.attrs as { axis: number };
    if (axis < 0) axis += x.shape.length;
    const outShape = x.shape.filter((_, i) => i !== axis);
    const size = [...x.shape];
    size[axis] = 1;
    return Array.from({ length: x.shape[axis]! }, (_, i) => {
      const begin = new Array<number>(x.shape.length).fill(0);
      begin[axis] = i;
      const out = sliceInHeap(args.backend as unknown as WasmBackendLike, x, begin, size);
      return { ...out, shape: outShape };
    });
  });
}
