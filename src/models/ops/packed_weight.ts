/**
 * Frozen weight matrices in reduced precision, held in ordinary int32 tfjs tensors (so disposal and tf.memory()
 * account for them) and expanded to float32 only a tile at a time inside the product kernels (packed_kernels.ts).
 *
 * - bf16: the upper 16 bits of each float32 (rounded to nearest even), two per int32.
 * - int8: symmetric absmax per output channel, q = round(w·127/absmax) in [−127, 127], four per int32, with one
 *   float32 scale (absmax/127) per channel: torch.ao's per-channel symmetric qint8, or bitsandbytes' LLM.int8 row-wise
 *   quantisation without its outlier columns.
 * - nf4: QLoRA's 4-bit NormalFloat code book, blocks of 64 consecutive stored values, one float32 absmax per block
 *   (no double quantisation of the absmax), two codes per byte, low nibble first.
 *
 * A matrix keeps its checkpoint shape [R, C] (row-major). `channelAxis` names the output-channel axis for int8's
 * scales: 0 for [out, in] weights, embeddings and LM heads, 1 for GPT-2's [in, out] Conv1D weights.
 */
import { tf, type Tensor } from '../../engine/tf.js';

import type { PackedFormat } from './frozen_dtypes.js';

export { FROZEN_DTYPES, parseFrozenDtype, type FrozenDtype, type PackedFormat } from './frozen_dtypes.js';

/** Values per block of the NF4 absmax scales. */
export const NF4_BLOCK = 64;

/** QLoRA's NF4 levels (Dettmers et al. 2023, appendix E): quantiles of N(0, 1) scaled to [−1, 1], with an exact 0. */
export const NF4_LEVELS = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Format codes the native kernel takes. */
export const FORMAT_CODE: Record<PackedFormat, number> = { bf16: 0, int8: 1, nf4: 2 };

export class PackedWeight {
  constructor(
    readonly format: PackedFormat,
    /** The logical (checkpoint) shape [R, C]. */
    readonly shape: [number, number],
    readonly channelAxis: 0 | 1,
    /** The packed bits, int32 [words]. */
    readonly data: Tensor,
    /** int8: [R] or [C] per channel; nf4: [⌈R·C/64⌉] per block; bf16: null. */
    readonly scales: Tensor | null,
  ) {}

  /** Bytes held (packed bits + scales). */
  get bytes(): number {
    return 4 * (this.data.size + (this.scales?.size ?? 0));
  }

  get isDisposed(): boolean {
    return this.data.isDisposed;
  }

  dispose(): void {
    this.data.dispose();
    this.scales?.dispose();
  }
}

export function isPackedWeight(w: unknown): w is PackedWeight {
  return w instanceof PackedWeight;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → bf16 bits, rounded to nearest even (NaN stays NaN). */
export function toBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

function nearestNf4(v: number): number {
  // The levels are sorted: binary search for the nearest (ties to the lower index).
  let lo = 0;
  let hi = 15;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (NF4_LEVELS[mid]! <= v) lo = mid;
    else hi = mid;
  }
  return v - NF4_LEVELS[lo]! <= NF4_LEVELS[hi]! - v ? lo : hi;
}

/** Packs a float32 matrix [R, C] (row-major) into `format`. */
export function packWeight(values: Float32Array, shape: [number, number], format: PackedFormat, channelAxis: 0 | 1 = 0): PackedWeight {
  const [R, C] = shape;
  const n = R * C;
  if (values.length !== n) throw new Error(`packWeight: ${values.length} values for shape [${shape}]`);
  let words: Int32Array;
  let scales: Float32Array | null = null;
  if (format === 'bf16') {
    words = new Int32Array(Math.ceil(n / 2));
    const h = new Uint16Array(words.buffer, 0, n);
    for (let i = 0; i < n; i++) h[i] = toBf16Bits(values[i]!);
  } else if (format === 'int8') {
    words = new Int32Array(Math.ceil(n / 4));
    const q = new Int8Array(words.buffer, 0, n);
    const channels = channelAxis === 0 ? R : C;
    const absmax = new Float32Array(channels);
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) {
        const ch = channelAxis === 0 ? r : c;
        const a = Math.abs(values[r * C + c]!);
        if (a > absmax[ch]!) absmax[ch] = a;
      }
    }
    scales = new Float32Array(channels);
    for (let ch = 0; ch < channels; ch++) scales[ch] = absmax[ch]! > 0 ? absmax[ch]! / 127 : 1;
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) {
        const s = scales[channelAxis === 0 ? r : c]!;
        q[r * C + c] = Math.max(-127, Math.min(127, Math.round(values[r * C + c]! / s)));
      }
    }
  } else {
    words = new Int32Array(Math.ceil(n / 8));
    const bytes = new Uint8Array(words.buffer, 0, Math.ceil(n / 2));
    const blocks = Math.ceil(n / NF4_BLOCK);
    scales = new Float32Array(blocks);
    for (let b = 0; b < blocks; b++) {
      const end = Math.min(n, (b + 1) * NF4_BLOCK);
      let m = 0;
      for (let i = b * NF4_BLOCK; i < end; i++) m = Math.max(m, Math.abs(values[i]!));
      scales[b] = m;
      const inv = m > 0 ? 1 / m : 0;
      for (let i = b * NF4_BLOCK; i < end; i++) {
        const code = nearestNf4(values[i]! * inv);
        bytes[i >> 1] |= (i & 1 ? code << 4 : code);
      }
    }
  }
  return new PackedWeight(format, [R, C], channelAxis, tf.tensor1d(words, 'int32'), scales ? tf.tensor1d(scales, 'float32') : null);
}

/** Packs a float32 tensor [R, C] (read once to the host). */
export function packTensor(t: Tensor, format: PackedFormat, channelAxis: 0 | 1 = 0): PackedWeight {
  if (t.rank !== 2) throw new Error(`packTensor: a weight matrix has rank 2, got [${t.shape}]`);
  return packWeight(t.dataSync() as Float32Array, t.shape as [number, number], format, channelAxis);
}

/** The host arrays of a packed weight's storage, viewed for its format. */
export interface PackedArrays {
  format: PackedFormat;
  R: number;
  C: number;
  channelAxis: 0 | 1;
  words: Int32Array;
  scales: Float32Array | null;
}

/**
 * Expands rows [r0, r1) of a packed matrix into `out` (at least (r1 − r0)·C floats), as the kernels do per tile.
 * The one JS definition of each format's decoding; native/blas/blas_binding.cc mirrors it.
 */
export function expandRows(p: PackedArrays, r0: number, r1: number, out: Float32Array): void {
  const { C, words, scales } = p;
  const start = r0 * C;
  const end = r1 * C;
  if (p.format === 'bf16') {
    const h = new Uint16Array(words.buffer, words.byteOffset, words.length * 2);
    const o32 = new Uint32Array(out.buffer, out.byteOffset, end - start);
    for (let i = start; i < end; i++) o32[i - start] = h[i]! << 16;
  } else if (p.format === 'int8') {
    const q = new Int8Array(words.buffer, words.byteOffset, words.length * 4);
    for (let r = r0; r < r1; r++) {
      const o = (r - r0) * C;
      const base = r * C;
      if (p.channelAxis === 0) {
        const s = scales![r]!;
        for (let c = 0; c < C; c++) out[o + c] = q[base + c]! * s;
      } else for (let c = 0; c < C; c++) out[o + c] = q[base + c]! * scales![c]!;
    }
  } else {
    const bytes = new Uint8Array(words.buffer, words.byteOffset, words.length * 4);
    for (let i = start; i < end; i++) {
      const code = (bytes[i >> 1]! >> ((i & 1) << 2)) & 15;
      out[i - start] = NF4_LEVELS[code]! * scales![i >> 6]!;
    }
  }
}

/**
 * The whole matrix as float32 [R, C]: for tests (the reference the kernels are compared with) and for exporting
 * weights, never on a product's path.
 */
export function dequantize(w: PackedWeight): Tensor {
  const [R, C] = w.shape;
  const out = new Float32Array(R * C);
  expandRows({ format: w.format, R, C, channelAxis: w.channelAxis, words: w.data.dataSync() as Int32Array, scales: (w.scales?.dataSync() as Float32Array) ?? null }, 0, R, out);
  return tf.tensor2d(out, [R, C]);
}
