/**
 * safetensors read/write. Layout: u64 little-endian header length N, N bytes of JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}), then the raw little-endian data.
 * Floats of every width are upcast to float32 on read (tfjs works in float32); integers come back as Int32Array.
 */
import { readFileSync, writeFileSync, statSync, openSync, readSync, closeSync, renameSync } from 'node:fs';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface LoadedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** float dtypes → Float32Array; integer/bool dtypes → Int32Array. */
  data: Float32Array | Int32Array;
}

const BYTES: Record<SafetensorsDtype, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export class SafetensorsError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Parses and validates the header only (cheap: reads 8 + N bytes). */
export function readSafetensorsHeader(file: string): { header: Record<string, HeaderEntry>; metadata: Record<string, string>; dataStart: number } {
  const size = statSync(file).size;
  if (size < 8) throw new SafetensorsError(file, `truncated: ${size} bytes, not even the 8-byte header length`);
  const fd = openSync(file, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (8 + n > size) {
      throw new SafetensorsError(file, `header length ${n} overruns the file (${size} bytes): truncated or not a safetensors file`);
    }
    const hBuf = Buffer.alloc(n);
    readSync(fd, hBuf, 0, n, 8);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(hBuf.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
    }
    const metadata = (parsed.__metadata__ ?? {}) as Record<string, string>;
    delete parsed.__metadata__;
    const dataStart = 8 + n;
    const dataLen = size - dataStart;
    const header = parsed as unknown as Record<string, HeaderEntry>;
    for (const [name, e] of Object.entries(header)) {
      if (!(e.dtype in BYTES)) {
        throw new SafetensorsError(file, `tensor "${name}" has unsupported dtype ${e.dtype} (supported: ${Object.keys(BYTES).join(', ')})`);
      }
      const [b, end] = e.data_offsets;
      const count = e.shape.reduce((a, d) => a * d, 1);
      if (end - b !== count * BYTES[e.dtype as SafetensorsDtype]) {
        throw new SafetensorsError(file, `tensor "${name}": shape [${e.shape}] ${e.dtype} needs ${count * BYTES[e.dtype as SafetensorsDtype]} bytes but data_offsets span ${end - b}`);
      }
      if (end > dataLen) {
        throw new SafetensorsError(file, `tensor "${name}" ends at byte ${end} of the data but the file holds only ${dataLen}: truncated file`);
      }
    }
    return { header, metadata, dataStart };
  } finally {
    closeSync(fd);
  }
}

function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) out[i] = s * m * 2 ** -24;
    else if (e === 31) out[i] = m ? NaN : s * Infinity;
    else out[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

function decode(dtype: SafetensorsDtype, bytes: Buffer): Float32Array | Int32Array {
  // Copy into an aligned buffer: slices of a file buffer are not 4-byte aligned in general.
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (dtype) {
    case 'F32': return new Float32Array(ab);
    case 'F16': return f16ToF32(new Uint16Array(ab));
    case 'BF16': return bf16ToF32(new Uint16Array(ab));
    case 'F64': return Float32Array.from(new Float64Array(ab));
    case 'I32': return new Int32Array(ab);
    case 'I64': {
      const big = new BigInt64Array(ab);
      const out = new Int32Array(big.length);
      for (let i = 0; i < big.length; i++) out[i] = Number(big[i]);
      return out;
    }
    case 'I16': return Int32Array.from(new Int16Array(ab));
    case 'I8': return Int32Array.from(new Int8Array(ab));
    case 'U8': case 'BOOL': return Int32Array.from(new Uint8Array(ab));
  }
}

/** Reads every tensor of a safetensors file (or only those whose name passes `filter`). */
export function readSafetensors(file: string, filter?: (name: string) => boolean): { tensors: Map<string, LoadedTensor>; metadata: Record<string, string> } {
  const { header, metadata, dataStart } = readSafetensorsHeader(file);
  const buf = readFileSync(file);
  const tensors = new Map<string, LoadedTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (filter && !filter(name)) continue;
    const [b, end] = e.data_offsets;
    const dtype = e.dtype as SafetensorsDtype;
    tensors.set(name, { dtype, shape: e.shape, data: decode(dtype, buf.subarray(dataStart + b, dataStart + end)) });
  }
  return { tensors, metadata };
}

export interface TensorToWrite {
  shape: number[];
  data: Float32Array | Int32Array;
  /** Stored dtype; F32 for Float32Array and I32 for Int32Array by default. BF16/F16 round to nearest even. */
  dtype?: 'F32' | 'BF16' | 'F16' | 'I32' | 'I64';
}

function f32ToBf16(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) { out[i] = (x >>> 16) | 0x40; continue; } // NaN stays NaN
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

function f32ToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    if (exp >= 31) { out[i] = sign | 0x7c00; continue; }
    if (exp <= 0) {
      if (exp < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - exp;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (exp << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = sign | h;
  }
  return out;
}

function encode(t: TensorToWrite): { dtype: string; bytes: Uint8Array } {
  const dtype = t.dtype ?? (t.data instanceof Float32Array ? 'F32' : 'I32');
  switch (dtype) {
    case 'F32': return { dtype, bytes: new Uint8Array(Float32Array.from(t.data).buffer) };
    case 'BF16': return { dtype, bytes: new Uint8Array(f32ToBf16(Float32Array.from(t.data)).buffer) };
    case 'F16': return { dtype, bytes: new Uint8Array(f32ToF16(Float32Array.from(t.data)).buffer) };
    case 'I32': return { dtype, bytes: new Uint8Array(Int32Array.from(t.data).buffer) };
    case 'I64': return { dtype, bytes: new Uint8Array(BigInt64Array.from(Array.from(t.data, (v) => BigInt(Math.trunc(v)))).buffer) };
  }
}

/** Writes tensors in name order (as `safetensors.torch.save_file` does), atomically (temp file, then rename). */
export function writeSafetensors(file: string, tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = { format: 'pt' }): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (count !== t.data.length) throw new Error(`writeSafetensors(${file}): tensor "${name}" has ${t.data.length} values for shape [${t.shape}]`);
    const { dtype, bytes } = encode(t);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces to a multiple of 8 so the data section is aligned, as the reference writer does.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hBytes.byteLength));
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, Buffer.concat([len, hBytes, ...chunks]));
  renameSync(tmp, file);
}
