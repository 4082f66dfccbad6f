/**
 * On-disk cache of tokenized, packed data, so a second run (or a resumed one) skips tokenization.
 *
 * Layout in the cache dir, per key: `<key>.bin` holds every array back to back as little-endian Uint16 (vocab below
 * 65,536) or Uint32, and `<key>.json` the index (dtype, offsets, what it was built from). The key is the sha256 of
 * the data files' contents hash, the tokenizer JSON's hash and the options, so changing any of them rebuilds.
 * Writes go to temp files renamed into place, index last: a crash never leaves an index pointing at a partial .bin.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const CACHE_VERSION = 1;

export interface TokenCacheIndex {
  version: number;
  key: string;
  dtype: 'uint16' | 'uint32';
  /** offsets[i]..offsets[i+1] is array i; length = arrays + 1. */
  offsets: number[];
  /** The options the arrays were built with, for people reading the cache dir. */
  options: Record<string, unknown>;
}

export interface TokenCacheKeyParts {
  /** Files (or save_to_disk directories) the data comes from; their CONTENTS are hashed, not their paths. */
  dataFiles: string[];
  /** The tokenizer's tokenizer.json text (or any string/object that identifies it exactly). */
  tokenizer: string | object;
  /** Everything else that changes the result: block size, template, maxLen, ... */
  options: Record<string, unknown>;
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hash of file contents; a directory hashes its files recursively in name order. */
export function hashContents(paths: string[]): string {
  const h = createHash('sha256');
  const visit = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).sort()) visit(join(p, name));
    } else {
      h.update(sha256(readFileSync(p)));
    }
  };
  for (const p of paths) visit(p);
  return h.digest('hex');
}

export function tokenCacheKey(parts: TokenCacheKeyParts): string {
  const tokenizerText = typeof parts.tokenizer === 'string' ? parts.tokenizer : JSON.stringify(parts.tokenizer);
  return sha256(
    JSON.stringify({
      version: CACHE_VERSION,
      data: hashContents(parts.dataFiles),
      tokenizer: sha256(tokenizerText),
      options: sortedKeys(parts.options),
    }),
  );
}

export interface CachedArrays {
  arrays: number[][];
  fromCache: boolean;
  key: string;
}

/**
 * The arrays stored under `key` in `cacheDir`, or `build()`'s result, written there for next time.
 * `vocabSize` picks the element width (Uint16 below 65,536); without it the largest id decides.
 */
export async function cachedTokenArrays(opts: {
  cacheDir: string;
  key: string;
  build: () => number[][] | Promise<number[][]>;
  vocabSize?: number;
  options?: Record<string, unknown>;
}): Promise<CachedArrays> {
  const cached = readTokenCache(opts.cacheDir, opts.key);
  if (cached) return { arrays: cached, fromCache: true, key: opts.key };
  const arrays = await opts.build();
  writeTokenCache(opts.cacheDir, opts.key, arrays, opts.vocabSize, opts.options ?? {});
  return { arrays, fromCache: false, key: opts.key };
}

/** The cached arrays for `key`, or undefined when absent or inconsistent (then the caller rebuilds). */
export function readTokenCache(cacheDir: string, key: string): number[][] | undefined {
  const indexPath = join(cacheDir, `${key}.json`);
  const binPath = join(cacheDir, `${key}.bin`);
  if (!existsSync(indexPath) || !existsSync(binPath)) return undefined;
  let index: TokenCacheIndex;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8')) as TokenCacheIndex;
  } catch {
    return undefined;
  }
  if (index.version !== CACHE_VERSION || index.key !== key) return undefined;
  const bytes = readFileSync(binPath);
  const width = index.dtype === 'uint16' ? 2 : 4;
  const total = index.offsets[index.offsets.length - 1] ?? 0;
  if (bytes.length !== total * width) return undefined;
  // Copy into an aligned buffer: a Buffer from readFileSync may sit at an odd offset of a shared pool.
  const aligned = new Uint8Array(bytes.length);
  aligned.set(bytes);
  const flat = width === 2 ? new Uint16Array(aligned.buffer) : new Uint32Array(aligned.buffer);
  const arrays: number[][] = [];
  for (let i = 0; i + 1 < index.offsets.length; i++) arrays.push(Array.from(flat.subarray(index.offsets[i], index.offsets[i + 1])));
  return arrays;
}

export function writeTokenCache(
  cacheDir: string,
  key: string,
  arrays: number[][],
  vocabSize: number | undefined,
  options: Record<string, unknown>,
): void {
  let maxId = 0;
  const offsets = [0];
  for (const a of arrays) {
    for (const id of a) {
      if (!Number.isInteger(id) || id < 0) throw new Error(`token cache: ids must be non-negative integers, got ${id}`);
      if (id > maxId) maxId = id;
    }
    offsets.push(offsets[offsets.length - 1]! + a.length);
  }
  const dtype = (vocabSize ?? maxId + 1) <= 65536 && maxId < 65536 ? 'uint16' : 'uint32';
  const flat = dtype === 'uint16' ? new Uint16Array(offsets[offsets.length - 1]!) : new Uint32Array(offsets[offsets.length - 1]!);
  arrays.forEach((a, i) => flat.set(a, offsets[i]));
  mkdirSync(cacheDir, { recursive: true });
  const index: TokenCacheIndex = { version: CACHE_VERSION, key, dtype, offsets, options };
  atomicWrite(join(cacheDir, `${key}.bin`), new Uint8Array(flat.buffer, flat.byteOffset, flat.byteLength));
  atomicWrite(join(cacheDir, `${key}.json`), JSON.stringify(index));
}

function atomicWrite(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}
