/**
 * Arrow IPC files (file or stream format; `tableFromIPC` tells them apart) and directories written by Hugging Face
 * datasets' `save_to_disk`: `state.json` lists the `data-*.arrow` shards (Arrow *stream* format) and
 * `dataset_info.json` describes the features; a `DatasetDict` adds `dataset_dict.json` with one folder per split.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { fileReadError } from '../hub/input_error.js';
import { ARROW_WORKER_SOURCE } from './arrow_parse_worker.js';
import { DataError } from './location.js';
import { gunzipBytes, readTextFile } from './text_decode.js';
import type { DataRecord, LocatedRecord } from './types.js';

/** Rows of one Arrow IPC file as plain JS objects, located by row index. */
export async function* arrowFileRecords(file: string): AsyncGenerator<LocatedRecord> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fileReadError(file, e);
  }
  if (bytes.length === 0) throw new DataError({ file }, 'empty file');
  if (file.endsWith('.gz')) bytes = gunzipBytes(file, bytes);
  const rows = await parseArrowInWorker(file, bytes);
  for (let index = 0; index < rows.length; index++) {
    const value = rows[index];
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new DataError({ file, index }, 'an Arrow row that is not a record of named columns');
    }
    yield { value: value as DataRecord, location: { file, index } };
  }
}

/** Seconds an Arrow file may take to parse (RLHF_ARROW_TIMEOUT_S; default 30 s plus 5 s per MB). */
export const ARROW_TIMEOUT_ENV = 'RLHF_ARROW_TIMEOUT_S';

function arrowTimeoutMs(bytes: number): number {
  const raw = process.env[ARROW_TIMEOUT_ENV];
  const s = raw !== undefined && raw.trim() !== '' ? Number(raw) : NaN;
  if (Number.isFinite(s) && s > 0) return s * 1000;
  return 30_000 + 5_000 * (bytes / 2 ** 20);
}

/**
 * apache-arrow can loop, allocating without end, on a corrupt file (a flatbuffer length gone wrong), and a loop in
 * this thread could not be stopped. So one worker thread parses (kept between files), and a parse that outlives its
 * time limit is an error naming the file; the worker is then replaced.
 */
let worker: Promise<Worker> | null = null;
let nextId = 0;

/** The parsing worker, once it has loaded (a fresh one when the last was stopped). */
function arrowWorker(file: string): Promise<Worker> {
  worker ??= startWorker(file);
  return worker;
}

function startWorker(file: string): Promise<Worker> {
  const arrowPath = createRequire(import.meta.url).resolve('apache-arrow');
  const w = new Worker(ARROW_WORKER_SOURCE, { eval: true, workerData: { arrowPath } });
  const started = new Promise<Worker>((resolve, reject) => {
    const fail = (why: string) => {
      worker = null;
      reject(new DataError({ file }, `the Arrow reader could not start (${why})`));
    };
    w.once('message', () => resolve(w)); // { ready: true }
    w.once('error', (e) => fail(e.message));
    w.once('exit', (code) => fail(`exit code ${code}`));
  });
  w.once('exit', () => {
    if (worker === started) worker = null;
  });
  return started;
}

async function parseArrowInWorker(file: string, bytes: Uint8Array): Promise<unknown[]> {
  const started = arrowWorker(file);
  const w = await started;
  const id = nextId++;
  const limit = arrowTimeoutMs(bytes.length);
  const forget = () => {
    if (worker === started) worker = null;
  };
  return new Promise<unknown[]>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
      w.unref();
    };
    const onMessage = (m: { id: number; rows?: unknown[]; error?: string }) => {
      if (m.id !== id) return;
      done();
      if (m.error !== undefined) reject(new DataError({ file }, `not a readable Arrow IPC file (${m.error})`));
      else resolve(m.rows!);
    };
    const onError = (e: Error) => {
      done();
      forget();
      reject(new DataError({ file }, `the Arrow reader failed on this file (${e.message}): it is corrupt or too large`));
    };
    const onExit = (code: number) => {
      done();
      reject(new DataError({ file }, `the Arrow reader stopped (exit code ${code}) on this file: it is corrupt or too large`));
    };
    const timer = setTimeout(() => {
      done();
      forget();
      void w.terminate();
      reject(new DataError({ file }, `the Arrow reader did not finish within ${(limit / 1000).toFixed(1)} s (${ARROW_TIMEOUT_ENV}): the file is corrupt`));
    }, limit);
    w.ref();
    w.on('message', onMessage);
    w.once('error', onError);
    w.once('exit', onExit);
    w.postMessage({ id, bytes });
  });
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
