/**
 * Arrow IPC files (file or stream format; `tableFromIPC` tells them apart) and directories written by Hugging Face
 * datasets' `save_to_disk`: `state.json` lists the `data-*.arrow` shards (Arrow *stream* format) and
 * `dataset_info.json` describes the features; a `DatasetDict` adds `dataset_dict.json` with one folder per split.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC, Vector } from 'apache-arrow';
import { fileReadError } from '../hub/input_error.js';
import { DataError } from './location.js';
import { gunzipBytes, readTextFile } from './text_decode.js';
import type { DataRecord, LocatedRecord } from './types.js';

/** Rows of one Arrow IPC file as plain JS objects, located by row index. */
export function* arrowFileRecords(file: string): Generator<LocatedRecord> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fileReadError(file, e);
  }
  if (bytes.length === 0) throw new DataError({ file }, 'empty file');
  if (file.endsWith('.gz')) bytes = gunzipBytes(file, bytes);
  let table;
  try {
    table = tableFromIPC(bytes);
  } catch (err) {
    throw new DataError({ file }, `not a readable Arrow IPC file (${(err as Error).message})`);
  }
  for (let index = 0; index < table.numRows; index++) {
    const row = table.get(index);
    yield { value: toPlain(row) as DataRecord, location: { file, index } };
  }
}

/** The shard files of a `save_to_disk` directory, in order; `split` picks a split of a DatasetDict. */
export function savedDatasetShards(dir: string, split?: string): string[] {
  const dictFile = join(dir, 'dataset_dict.json');
  if (existsSync(dictFile)) {
    const splits = (readJson(dictFile) as { splits?: string[] }).splits ?? [];
    const chosen = split ?? (splits.includes('train') ? 'train' : splits[0]);
    if (!chosen || !splits.includes(chosen)) {
      throw new DataError({ file: dictFile }, `split "${split}" not found; available splits: ${splits.join(', ')}`);
    }
    return savedDatasetShards(join(dir, chosen));
  }
  const stateFile = join(dir, 'state.json');
  if (existsSync(stateFile)) {
    const state = readJson(stateFile) as { _data_files?: { filename?: string }[] };
    const names = (state._data_files ?? []).map((f, i) => {
      if (typeof f.filename !== 'string') throw new DataError({ file: stateFile, index: i }, 'missing field "filename"');
      return f.filename;
    });
    if (names.length > 0) return names.map((n) => join(dir, n));
  }
  if (!existsSync(stateFile) && !existsSync(join(dir, 'dataset_info.json'))) {
    throw new DataError(
      { file: dir },
      'not a datasets save_to_disk directory (no state.json, dataset_info.json or dataset_dict.json)',
    );
  }
  const shards = readdirSync(dir)
    .filter((n) => /^data-.*\.arrow$/.test(n))
    .sort();
  if (shards.length === 0) throw new DataError({ file: dir }, 'no data-*.arrow files');
  return shards.map((n) => join(dir, n));
}

function readJson(file: string): unknown {
  const text = readTextFile(file);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DataError({ file }, `invalid JSON (${(err as Error).message})`);
  }
}

/** Arrow values -> plain JSON-like values: lists become arrays, struct rows objects, int64 numbers. */
function toPlain(value: unknown): unknown {
  if (value === null || value === undefined) return value ?? null;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Vector) return Array.from(value as Iterable<unknown>, toPlain);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, toPlain);
  }
  if (typeof value === 'object') {
    const obj = value as { toJSON?: () => unknown };
    // StructRow and MapRow are proxies; toJSON gives their fields as an ordinary object.
    const source = typeof obj.toJSON === 'function' ? obj.toJSON() : value;
    if (Array.isArray(source)) return source.map(toPlain);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(source as Record<string, unknown>)) out[k] = toPlain(v);
    return out;
  }
  return value;
}
