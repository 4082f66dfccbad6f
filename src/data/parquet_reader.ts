/**
 * Parquet files (what the Hugging Face Hub serves for every dataset, `data/train-00000-of-00002.parquet`), read with
 * hyparquet (pure JS) and hyparquet-compressors (snappy, gzip, zstd, brotli, lz4), one row group at a time so a
 * large file is never decoded whole. Rows become plain JSON-like records: int64 → number (exact up to 2^53),
 * structs → objects, lists → arrays, binary → UTF-8 text.
 *
 * Also the folders that hold shards of one dataset, as the Hub lays them out: `train-00000-of-00002.parquet`,
 * `test.jsonl`, … directly in the folder or in its `data/` subfolder. The split is the name before the first `-`
 * or `.`; files of the asked split are read in name order.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { DataError } from './location.js';
import type { DataRecord, LocatedRecord } from './types.js';

function plain(v: unknown, file: string, index: number): unknown {
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new DataError({ file, index }, `integer ${v} does not fit a JavaScript number exactly`);
    return Number(v);
  }
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map((x) => plain(x, file, index));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x, file, index)]));
  return v;
}

/** The records of one .parquet file, row group by row group; each located by its row index. */
export async function* parquetFileRecords(path: string): AsyncGenerator<LocatedRecord> {
  let file;
  let metadata;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw new DataError({ file: path }, `not a readable parquet file (${(err as Error).message})`);
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, compressors });
    } catch (err) {
      throw new DataError({ file: path, index: rowStart }, `cannot decode rows ${rowStart}..${rowEnd - 1} (${(err as Error).message})`);
    }
    for (let i = 0; i < rows.length; i++) yield { value: plain(rows[i], path, rowStart + i) as DataRecord, location: { file: path, index: rowStart + i } };
    rowStart = rowEnd;
  }
}

/** Data files a shard folder may hold. */
const SHARD_FILE = /\.(parquet|jsonl|ndjson|json|arrow|csv)(\.gz)?$/;

function dataFiles(dir: string): string[] {
  const inner = join(dir, 'data');
  const where = existsSync(inner) && statSync(inner).isDirectory() ? inner : dir;
  return readdirSync(where).filter((n) => SHARD_FILE.test(n) && !n.startsWith('.') && statSync(join(where, n)).isFile()).sort().map((n) => join(where, n));
}

/** The split a shard's name gives: `train-00000-of-00002.parquet` → train, `test.jsonl` → test. */
export function shardSplit(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  return name.split(/[-.]/)[0]!;
}

/** Whether a directory is a folder of data shards (and not a datasets save_to_disk directory). */
export function isShardFolder(dir: string): boolean {
  if (['dataset_dict.json', 'state.json', 'dataset_info.json'].some((f) => existsSync(join(dir, f)))) return false;
  return dataFiles(dir).length > 0;
}

/** The splits a shard folder holds, in name order. */
export function shardFolderSplits(dir: string): string[] {
  return [...new Set(dataFiles(dir).map(shardSplit))];
}

/**
 * The files of `split` (default: train when the folder has it, else every file: a folder of anonymous shards).
 * An asked split that is not there is an error naming the splits that are.
 */
export function shardFiles(dir: string, split?: string): string[] {
  const files = dataFiles(dir);
  const splits = shardFolderSplits(dir);
  const want = split ?? (splits.includes('train') ? 'train' : undefined);
  if (want === undefined) return files;
  const picked = files.filter((f) => shardSplit(f) === want);
  if (picked.length === 0) throw new DataError({ file: dir }, `split "${want}" not found; the shards' splits are ${splits.join(', ')}`);
  return picked;
}
