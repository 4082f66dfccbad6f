/**
 * safetensors read/write. Layout: u64 little-endian header length N, N bytes of JSON header
 * ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}), then the raw little-endian data.
 * Floats of every width are upcast to float32 on read (tfjs works in float32); integers come back as Int32Array.
 */
import { writeFileSync, statSync, openSync, readSync, closeSync, renameSync } from 'node:fs';
import { InputFileError, fileReadError } from './input_error.js';

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

export interface HeaderEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  data_offsets: [number, number];
}

export class SafetensorsError extends InputFileError {
  constructor(file: string, message: string) {
    super(file, message);
    this.name = 'SafetensorsError';
  }
}

/**
 * Longest header accepted: the reference implementation's limit (100 MB). A real header is a few hundred bytes per
 * tensor; a larger length is a corrupt or hostile file, and reading it would allocate that much.
 */
export const MAX_HEADER_BYTES = 100_000_000;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses and validates the whole header before any tensor is read (cheap: reads 8 + N bytes): a JSON object whose
 * `__metadata__` maps strings to strings and whose every other entry has a known dtype, a shape of non-negative
 * integers, and `data_offsets` [begin, end] inside the data section spanning exactly dtype size × elements, with no
 * two tensors overlapping. Errors name the file and the tensor.
 */
export function readSafetensorsHeader(file: string): { header: Record<string, HeaderEntry>; metadata: Record<string, string>; dataStart: number } {
  let size: number;
  let fd: number;
  try {
    size = statSync(file).size;
    fd = openSync(file, 'r');
  } catch (e) {
    throw fileReadError(file, e);
  }
  try {
    if (size < 8) throw new SafetensorsError(file, `truncated: ${size} bytes, not even the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(size - 8)) {
      throw new SafetensorsError(file, `header length ${n} overruns the file (${size} bytes): truncated or not a safetensors file`);
    }
    if (n > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit: not a safetensors file`);
    }
    if (n < 2n) throw new SafetensorsError(file, `header length ${n} is too short for a JSON object: not a safetensors file`);
    const hBuf = Buffer.alloc(Number(n));
    readSync(fd, hBuf, 0, hBuf.length, 8);
    const dataStart = 8 + hBuf.length;
    return { ...parseSafetensorsHeader(file, hBuf, size - dataStart), dataStart };
  } finally {
    closeSync(fd);
  }
}

/** Validates the header bytes of `file` against a data section of `dataLen` bytes (see readSafetensorsHeader). */
export function parseSafetensorsHeader(file: string, bytes: Uint8Array, dataLen: number): { header: Record<string, HeaderEntry>; metadata: Record<string, string> } {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new SafetensorsError(file, 'header is not valid UTF-8: not a safetensors file');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(parsed)) throw new SafetensorsError(file, `header must be a JSON object, got ${describe(parsed)}`);
  const metadata: Record<string, string> = {};
  const rawMeta = parsed.__metadata__;
  if (rawMeta !== undefined) {
    if (!isPlainObject(rawMeta)) throw new SafetensorsError(file, `"__metadata__" must be an object of strings, got ${describe(rawMeta)}`);
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') throw new SafetensorsError(file, `"__metadata__"."${k}" must be a string, got ${describe(v)}`);
      metadata[k] = v;
    }
  }
  const header: Record<string, HeaderEntry> = {};
  const spans: Array<{ name: string; begin: number; end: number }> = [];
  for (const [name, e] of Object.entries(parsed)) {
    if (name === '__metadata__') continue;
    const entry = checkEntry(file, name, e, dataLen);
    header[name] = entry;
    spans.push({ name, begin: entry.data_offsets[0], end: entry.data_offsets[1] });
  }
  // Sorted by start, each tensor must end before the next begins (empty tensors take no bytes and overlap nothing).
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let last: { name: string; end: number } | null = null;
  for (const s of spans) {
    if (s.begin === s.end) continue;
    if (last && s.begin < last.end) {
      throw new SafetensorsError(file, `tensors "${last.name}" and "${s.name}" overlap (bytes ${s.begin}..${last.end} of the data section belong to both)`);
    }
    last = s;
  }
  return { header, metadata };
}

function checkEntry(file: string, name: string, e: unknown, dataLen: number): HeaderEntry {
  const bad = (msg: string) => new SafetensorsError(file, `tensor "${name}": ${msg}`);
  if (!isPlainObject(e)) throw bad(`header entry must be an object with dtype, shape and data_offsets, got ${describe(e)}`);
  const dtype = e.dtype;
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(BYTES, dtype)) {
    throw bad(`unsupported dtype ${typeof dtype === 'string' ? dtype : JSON.stringify(dtype) ?? 'undefined'} (supported: ${Object.keys(BYTES).join(', ')})`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape)) throw bad(`"shape" must be an array of non-negative integers, got ${describe(shape)}`);
  let count = 1;
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw bad(`shape[${i}] is ${JSON.stringify(d)}, not a non-negative integer`);
    count *= d;
  });
  const offsets = e.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2) throw bad(`"data_offsets" must be [begin, end], got ${JSON.stringify(offsets) ?? 'nothing'}`);
  const [begin, end] = offsets as unknown[];
  for (const [what, v] of [['begin', begin], ['end', end]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`data_offsets ${what} is ${JSON.stringify(v)}, not a non-negative integer`);
  }
  const b = begin as number;
  const en = end as number;
  if (b > en) throw bad(`data_offsets [${b}, ${en}] end before they begin`);
  const bytes = count * BYTES[dtype as SafetensorsDtype];
  if (!Number.isSafeInteger(bytes) || en - b !== bytes) {
    throw bad(`shape [${shape.join(', ')}] ${dtype} needs ${bytes} bytes but data_offsets [${b}, ${en}] span ${en - b}`);
  }
  if (en > dataLen) throw bad(`ends at byte ${en} of the data section but the file holds only ${dataLen}: truncated file`);
  return { dtype: dtype as SafetensorsDtype, shape: shape as number[], data_offsets: [b, en] };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
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
  // Typed-array views need an aligned buffer of their own: copy unless `bytes` already is one.
  const whole = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength;
  const ab = whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
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
  const tensors = new Map<string, LoadedTensor>();
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw fileReadError(file, e);
  }
  try {
    for (const [name, e] of Object.entries(header)) {
      if (filter && !filter(name)) continue;
      const [b, end] = e.data_offsets;
      // One read per tensor into its own buffer: aligned for the typed-array views, and no whole-file copy.
      const bytes = Buffer.alloc(end - b);
      const got = bytes.length ? readSync(fd, bytes, 0, bytes.length, dataStart + b) : 0;
      if (got !== bytes.length) throw new SafetensorsError(file, `tensor "${name}": the file ended after ${got} of its ${bytes.length} bytes (it shrank while being read?)`);
      tensors.set(name, { dtype: e.dtype, shape: e.shape, data: decode(e.dtype, bytes) });
    }
  } finally {
    closeSync(fd);
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
