/**
 * Read dataset files into located records, whatever the container: JSON array, JSONL, `.gz` of either, CSV with a
 * header row, Arrow IPC, Parquet, a `save_to_disk` directory, a folder of shards (parquet_reader.ts), or plain `.txt`.
 *
 * Every record carries its location (file + line for JSONL/CSV, index for JSON arrays and Arrow) so later stages can
 * say exactly which record is wrong. Bad records (a JSONL line that is not JSON, a ragged CSV row, a value that is not
 * an object) are errors unless `skipBadRecords`, which skips and counts them.
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { fileReadError } from '../hub/input_error.js';
import { arrowFileRecords, savedDatasetShards } from './arrow_reader.js';
import { readCsvRecords } from './csv_reader.js';
import { isShardFolder, parquetFileRecords, shardFiles } from './parquet_reader.js';
import { DataError, formatLocation, type RecordLocation } from './location.js';
import { readTextFile, textChunks, textLines } from './text_decode.js';
import type { DataRecord, LocatedRecord } from './types.js';

export type FileKind = 'json' | 'jsonl' | 'csv' | 'arrow' | 'parquet' | 'saved_dataset' | 'shards' | 'text';

export interface ReadOptions {
  /** Stop after this many good records. */
  maxRecords?: number;
  /** Skip malformed records instead of failing; they are counted in `ReadResult.skipped`. */
  skipBadRecords?: boolean;
  /** Override the kind guessed from the file extension. */
  kind?: FileKind;
  /** Split of a saved DatasetDict directory or a shard folder (default "train", else the first / every shard). */
  split?: string;
  /** Called for each skipped record (only with skipBadRecords). */
  onSkip?: (location: RecordLocation, reason: string) => void;
}

export interface ReadResult {
  records: LocatedRecord[];
  /** How many malformed records were skipped (always 0 without skipBadRecords). */
  skipped: number;
  /** "file:line: reason" for the first few skipped records, for the caller's log. */
  skippedExamples: string[];
}

/** How many skipped records are described in `skippedExamples`. */
const MAX_SKIPPED_EXAMPLES = 5;

const EXTENSION_KINDS: Record<string, FileKind> = {
  json: 'json',
  jsonl: 'jsonl',
  ndjson: 'jsonl',
  csv: 'csv',
  arrow: 'arrow',
  feather: 'arrow',
  ipc: 'arrow',
  parquet: 'parquet',
  txt: 'text',
  text: 'text',
  md: 'text',
};

/** The kind of a path from its extension (a `.gz` suffix is looked through); a directory is a saved dataset. */
export function detectFileKind(path: string): FileKind {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw fileReadError(path, e);
  }
  if (isDir) return isShardFolder(path) ? 'shards' : 'saved_dataset';
  const name = basename(path).replace(/\.gz$/, '');
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1).toLowerCase() : '';
  const kind = EXTENSION_KINDS[ext];
  if (!kind) {
    throw new DataError(
      { file: path },
      `unknown file type ".${ext}"; expected one of ${Object.keys(EXTENSION_KINDS).map((e) => '.' + e).join(', ')} ` +
        '(optionally .gz), a save_to_disk directory or a folder of shards',
    );
  }
  return kind;
}

/** Stream records one at a time (JSONL and CSV are never held whole in memory). */
export async function* iterateRecords(path: string, opts: ReadOptions = {}): AsyncGenerator<LocatedRecord> {
  const kind = opts.kind ?? detectFileKind(path);
  const max = opts.maxRecords ?? Infinity;
  if (max <= 0) return;
  let count = 0;
  for await (const record of recordsOfKind(path, kind, opts)) {
    yield record;
    if (++count >= max) return;
  }
}

/** Read all records (up to maxRecords) and the count of skipped bad ones. */
export async function readRecords(path: string, opts: ReadOptions = {}): Promise<ReadResult> {
  const records: LocatedRecord[] = [];
  const skippedExamples: string[] = [];
  let skipped = 0;
  const onSkip = (location: RecordLocation, reason: string): void => {
    skipped++;
    if (skippedExamples.length < MAX_SKIPPED_EXAMPLES) skippedExamples.push(`${formatLocation(location)}: ${reason}`);
    opts.onSkip?.(location, reason);
  };
  for await (const record of iterateRecords(path, { ...opts, onSkip })) records.push(record);
  if (records.length === 0 && skipped > 0) {
    throw new DataError({ file: path }, `no valid records: all ${skipped} were malformed (${skippedExamples[0]})`);
  }
  if (records.length === 0 && (opts.maxRecords ?? 1) > 0) throw new DataError({ file: path }, 'no records: the file holds none');
  return { records, skipped, skippedExamples };
}

export interface ConvertResult<T> {
  items: T[];
  /** The reader's skipped records plus those the conversion rejected. */
  skipped: number;
  skippedExamples: string[];
}

/**
 * Converts every record read. With skipBadRecords a record whose conversion throws a DataError is skipped and counted
 * together with the reader's own skips; any other error, or any error without skipBadRecords, propagates.
 */
export function convertRecords<T>(read: ReadResult, convert: (rec: LocatedRecord) => T, skipBadRecords = false): ConvertResult<T> {
  const items: T[] = [];
  const skippedExamples = [...read.skippedExamples];
  let skipped = read.skipped;
  for (const rec of read.records) {
    try {
      items.push(convert(rec));
    } catch (err) {
      if (!(err instanceof DataError) || !skipBadRecords) throw err;
      skipped++;
      if (skippedExamples.length < MAX_SKIPPED_EXAMPLES) skippedExamples.push(err.message);
    }
  }
  return { items, skipped, skippedExamples };
}

function recordsOfKind(path: string, kind: FileKind, opts: ReadOptions): AsyncIterable<LocatedRecord> | Iterable<LocatedRecord> {
  switch (kind) {
    case 'json':
      return jsonFileRecords(path, opts);
    case 'jsonl':
      return jsonlRecords(path, opts);
    case 'csv':
      return readCsvRecords(path, textChunks(path), opts);
    case 'arrow':
      return arrowFileRecords(path);
    case 'parquet':
      return parquetFileRecords(path);
    case 'saved_dataset':
      return savedDatasetRecords(path, opts.split);
    case 'shards':
      return shardRecords(path, opts);
    case 'text':
      return [textFileRecord(path)];
  }
}

/** The whole text of a file (gunzipped for .gz): invalid UTF-8 is an error naming the line; a BOM is removed. */
function readWholeText(path: string): string {
  return readTextFile(path);
}

function textFileRecord(path: string): LocatedRecord {
  const text = readWholeText(path);
  if (text.trim() === '') throw new DataError({ file: path }, 'empty file');
  return { value: { text }, location: { file: path } };
}

/**
 * A `.json` file: a JSON array of records, a single JSON object, or, as some datasets ship it (BELLE's dev1K.json),
 * JSON Lines under a .json name. The first non-blank character tells an array from the rest.
 */
function* jsonFileRecords(path: string, opts: ReadOptions): Generator<LocatedRecord> {
  const text = readWholeText(path);
  const start = text.search(/\S/);
  if (start < 0) throw new DataError({ file: path }, 'empty file');
  if (text[start] !== '[') {
    const single = tryParse(text);
    if (single.ok) {
      yield* checkedRecords([single.value], opts, (i) => ({ file: path, index: i }));
    } else {
      yield* jsonlLinesRecords(path, text.split('\n'), opts);
    }
    return;
  }
  const parsed = tryParse(text);
  if (!parsed.ok) {
    throw new DataError({ file: path, line: lineOfJsonError(text, parsed.error) }, `invalid JSON (${parsed.error.message})`);
  }
  const items = parsed.value as unknown[];
  if (items.length === 0) throw new DataError({ file: path }, 'no records: the JSON array is empty');
  yield* checkedRecords(items, opts, (i) => ({ file: path, index: i }));
}

function* checkedRecords(
  items: unknown[],
  opts: ReadOptions,
  locate: (i: number) => RecordLocation,
): Generator<LocatedRecord> {
  for (let i = 0; i < items.length; i++) {
    const location = locate(i);
    const value = asRecord(items[i]);
    if (typeof value === 'string') {
      if (!opts.skipBadRecords) throw new DataError(location, value);
      opts.onSkip?.(location, value);
      continue;
    }
    yield { value, location };
  }
}

/** Records are JSON objects; a bare string is taken as `{text}`. Anything else gives back the reason it is bad. */
function asRecord(item: unknown): DataRecord | string {
  if (typeof item === 'string') return { text: item };
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    return `expected a JSON object, got ${item === null ? 'null' : Array.isArray(item) ? 'an array' : typeof item}`;
  }
  return item as DataRecord;
}

async function* jsonlRecords(path: string, opts: ReadOptions): AsyncGenerator<LocatedRecord> {
  let sawContent = false;
  for await (const { line, text } of textLines(path)) {
    if (text.trim() === '') continue;
    sawContent = true;
    const record = parseJsonlLine(path, line, text, opts);
    if (record) yield record;
  }
  if (!sawContent) throw new DataError({ file: path }, 'empty file');
}

function* jsonlLinesRecords(path: string, lines: string[], opts: ReadOptions): Generator<LocatedRecord> {
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    if (text.trim() === '') continue;
    const record = parseJsonlLine(path, i + 1, text, opts);
    if (record) yield record;
  }
}

function parseJsonlLine(path: string, line: number, text: string, opts: ReadOptions): LocatedRecord | undefined {
  const location = { file: path, line };
  const parsed = tryParse(text);
  const value = parsed.ok ? asRecord(parsed.value) : `invalid JSON (${parsed.error.message})`;
  if (typeof value !== 'string') return { value, location };
  if (!opts.skipBadRecords) throw new DataError(location, value);
  opts.onSkip?.(location, value);
  return undefined;
}

async function* savedDatasetRecords(dir: string, split?: string): AsyncGenerator<LocatedRecord> {
  let any = false;
  for (const shard of savedDatasetShards(dir, split)) {
    for await (const record of arrowFileRecords(shard)) {
      any = true;
      yield record;
    }
  }
  if (!any) throw new DataError({ file: dir }, 'no records in any data-*.arrow shard');
}

/** Every shard of the split, in name order, each read as its own extension says. */
async function* shardRecords(dir: string, opts: ReadOptions): AsyncGenerator<LocatedRecord> {
  for (const file of shardFiles(dir, opts.split)) yield* recordsOfKind(file, detectFileKind(file), { ...opts, kind: undefined });
}

type Parsed = { ok: true; value: unknown } | { ok: false; error: Error };

function tryParse(text: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: err as Error };
  }
}

/** V8 reports "at position N" (Node 20) or "(line L column C)" (Node 22+); turn either into a 1-based line. */
function lineOfJsonError(text: string, error: Error): number | undefined {
  const lineMatch = /line (\d+) column/.exec(error.message);
  if (lineMatch) return Number(lineMatch[1]);
  const posMatch = /position (\d+)/.exec(error.message);
  if (!posMatch) return undefined;
  const pos = Number(posMatch[1]);
  let line = 1;
  for (let i = 0; i < pos && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
