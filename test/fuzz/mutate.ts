/**
 * Seeded mutations of file bytes for the fuzz suite: bit flips, truncation, removed / duplicated ranges, splices
 * from other seeds, "interesting" bytes, and for JSON text (or a safetensors header) replacements of numbers and
 * strings by boundary values. Each input comes from its own RNG seeded by (suite seed, target, index), so any input
 * can be rebuilt from those three alone.
 */
import { gzipSync } from 'node:zlib';

/** mulberry32: small, fast, good enough to drive mutations. */
export class FuzzRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** FNV-1a of a string, mixed with the suite seed and the input index: the per-input RNG seed. */
export function inputSeed(seed: number, target: string, index: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (const ch of `${target}#${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x0a, 0x0d, 0x3a, 0xc3, 0xe9, 0x5c, 0x2d, 0x30, 0xef, 0xfe];
const INTERESTING_NUMBERS = ['0', '-1', '-0', '1', '2', '3', '7', '1e9', '1e308', '1e999', '-1e-320', '0.5', '2.5e-7', '65536', '4294967296',
  '9007199254740993', '18446744073709551616', '-9223372036854775808', '"3"', 'null', 'true', '[]', '{}', '[0,1,2]', '""'];
const INTERESTING_STRINGS = ['null', '""', '"\\u0000"', '"../../x"', '"/etc/passwd"', '123', '-5', '{}', '[]', '"\\ud800"', '"F64"', '"BPE"',
  '"__proto__"', '"constructor"', '"a b"', '"\\n"'];

export type Structure = 'json' | 'safetensors' | 'bytes';

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A copy (Buffer#slice would share memory and let a mutation corrupt the seed it came from). */
function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function bitFlip(b: Uint8Array, rng: FuzzRng): Uint8Array {
  if (b.length === 0) return b;
  const out = copy(b);
  for (let k = 1 + rng.int(4); k > 0; k--) out[rng.int(out.length)]! ^= 1 << rng.int(8);
  return out;
}

function truncate(b: Uint8Array, rng: FuzzRng): Uint8Array {
  // Half the cuts land in the last 10%, where a half-written or half-downloaded file ends.
  const at = rng.next() < 0.5 ? rng.int(b.length + 1) : b.length - rng.int(Math.max(1, Math.ceil(b.length / 10)));
  return b.subarray(0, Math.max(0, at));
}

function range(b: Uint8Array, rng: FuzzRng, max: number): [number, number] {
  const start = rng.int(b.length + 1);
  return [start, Math.min(b.length, start + 1 + rng.int(max))];
}

function removeRange(b: Uint8Array, rng: FuzzRng): Uint8Array {
  const [s, e] = range(b, rng, 1 + rng.int(64));
  return concat(b.subarray(0, s), b.subarray(e));
}

function duplicateRange(b: Uint8Array, rng: FuzzRng): Uint8Array {
  const [s, e] = range(b, rng, 1 + rng.int(128));
  const at = rng.int(b.length + 1);
  return concat(b.subarray(0, at), b.subarray(s, e), b.subarray(at));
}

function splice(b: Uint8Array, rng: FuzzRng, others: Uint8Array[]): Uint8Array {
  const other = rng.pick(others);
  const [s, e] = range(other, rng, 1 + rng.int(256));
  const at = rng.int(b.length + 1);
  const overwrite = rng.next() < 0.5 ? Math.min(b.length - at, e - s) : 0;
  return concat(b.subarray(0, at), other.subarray(s, e), b.subarray(at + overwrite));
}

function interestingByte(b: Uint8Array, rng: FuzzRng): Uint8Array {
  if (b.length === 0) return Uint8Array.of(rng.pick(INTERESTING_BYTES));
  const out = copy(b);
  out[rng.int(out.length)] = rng.pick(INTERESTING_BYTES);
  return out;
}

/** Replaces one JSON number or string literal of the text by a boundary value. */
function jsonToken(b: Uint8Array, rng: FuzzRng): Uint8Array {
  const text = Buffer.from(b).toString('latin1'); // byte-preserving view
  const numbers = rng.next() < 0.6;
  const re = numbers ? /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g : /"(?:[^"\\]|\\.)*"/g;
  const spans: Array<[number, number]> = [];
  for (let m = re.exec(text); m && spans.length < 4096; m = re.exec(text)) spans.push([m.index, m.index + m[0].length]);
  if (spans.length === 0) return bitFlip(b, rng);
  const [s, e] = rng.pick(spans);
  const value = Buffer.from(rng.pick(numbers ? INTERESTING_NUMBERS : INTERESTING_STRINGS), 'latin1');
  return concat(b.subarray(0, s), value, b.subarray(e));
}

const GENERIC = [bitFlip, truncate, removeRange, duplicateRange, splice, interestingByte];

function mutateOnce(b: Uint8Array, rng: FuzzRng, others: Uint8Array[], structure: Structure): Uint8Array {
  if (structure === 'json' && rng.next() < 0.5) return jsonToken(b, rng);
  if (structure === 'safetensors' && b.length >= 8 && rng.next() < 0.6) return mutateSafetensorsHeader(b, rng);
  const m = rng.pick(GENERIC);
  return m(b, rng, others);
}

/** Mutates the JSON header of a safetensors file and rewrites its length, so the change reaches the validator. */
function mutateSafetensorsHeader(b: Uint8Array, rng: FuzzRng): Uint8Array {
  const view = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const n = Number(view.readBigUInt64LE(0));
  if (8 + n > b.length) return bitFlip(b, rng);
  if (rng.next() < 0.1) {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(rng.pick([0, 1, 2, n - 1, n + 1, b.length, 2 ** 32, 2 ** 53])) & 0xffffffffffffffffn);
    return concat(len, b.subarray(8));
  }
  const header = jsonToken(b.subarray(8, 8 + n), rng);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return concat(len, header, b.subarray(8 + n));
}

/**
 * One fuzz input from the seeds: 1 to 4 stacked mutations. For gzip targets the mutations go either to the text
 * (then compressed: the parser sees bad content) or to the compressed bytes (zlib sees bad data).
 */
export function mutateInput(seeds: Uint8Array[], rng: FuzzRng, structure: Structure, gzip: boolean): Uint8Array {
  let b = rng.pick(seeds);
  const compressedFirst = gzip && rng.next() < 0.5;
  if (compressedFirst) b = gzipSync(b);
  for (let k = 1 + rng.int(4); k > 0; k--) b = mutateOnce(b, rng, seeds, compressedFirst ? 'bytes' : structure);
  return gzip && !compressedFirst ? gzipSync(b) : b;
}
