/**
 * Every parser of untrusted files, as one table: seeds (valid files), how to mutate them, and how to parse a file.
 * One more parser is one more entry here (the driver, the corpus replay and the assertions need nothing else).
 *
 * A parse may succeed or fail; a failure must be an InputFileError (or subclass) that names the file, or a file of
 * the same model directory (an index naming a bad shard). Anything else (TypeError, RangeError, a bare zlib or
 * JSON message, a hang) is a bug the suite reports.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Field, Int64, List, Struct, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import { loadSftSamples, readRecords } from '../../src/data/index.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../src/hub/safetensors.js';
import { readShardedSafetensors } from '../../src/hub/safetensors_index.js';
import { Tokenizer } from '../../src/hub/tokenizer.js';
import { buildCharTokenizerJson } from '../../src/hub/char_tokenizer.js';
import { buildSpec, parameterShapes } from '../../src/models/architectures.js';
import { readConfig } from '../../src/models/pretrained.js';
import type { Structure } from './mutate.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

export interface FuzzTarget {
  name: string;
  /** Name of the file each input is written to, inside the target's own directory (the extension picks the reader). */
  file: string;
  structure: Structure;
  /** Compress every input (the mutations hit the text or the gzip stream). */
  gzip?: boolean;
  /** Valid inputs to start from; may also write sibling files the parser needs into `dir` (shards). */
  seeds(dir: string): Uint8Array[];
  /** Parses the file at `path`; `index` varies options (e.g. skipBadRecords on odd inputs). */
  parse(path: string, index: number): Promise<unknown>;
}

const text = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const json = (v: unknown): Uint8Array => text(JSON.stringify(v, null, 1));

function safetensorsBytes(dir: string, name: string, tensors: Map<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const file = join(dir, name);
  writeSafetensors(file, tensors, metadata);
  return readFileSync(file);
}

const smallTensors = (): Map<string, TensorToWrite> => new Map<string, TensorToWrite>([
  ['a.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
  ['b.bias', { shape: [4], data: Float32Array.from([0.5, -1, 2, 3]), dtype: 'BF16' }],
  ['c.ids', { shape: [3], data: Int32Array.from([7, -8, 9]), dtype: 'I64' }],
  ['d.half', { shape: [1, 2], data: Float32Array.from([1.5, -2]), dtype: 'F16' }],
]);

/** Rows that every SFT format reader accepts (alpaca fields), as the tabular seeds' content. */
const ROWS = [
  { instruction: 'Give three tips for staying healthy.', input: '', output: 'Eat well, sleep, move.' },
  { instruction: 'Translate "bonjour".', input: 'bonjour', output: 'hello — «salut» 你好' },
  { instruction: 'Add 2 and 3.', input: '2, 3', output: '5' },
];

function csvOf(rows: Array<Record<string, string>>): string {
  const cols = Object.keys(rows[0]!);
  const cell = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return [cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c] ?? '')).join(','))].join('\n') + '\n';
}

function arrowSeeds(): Uint8Array[] {
  const turn = new Struct([new Field('from', new Utf8(), true), new Field('value', new Utf8(), true)]);
  const conversations = new Table({
    id: vectorFromArray([1n, 2n], new Int64()),
    conversations: vectorFromArray([[{ from: 'human', value: 'q1' }, { from: 'gpt', value: 'a1' }], [{ from: 'human', value: 'q2' }, { from: 'gpt', value: 'a2' }]],
      new List(new Field('item', turn, true))),
  });
  const alpaca = new Table({
    instruction: vectorFromArray(ROWS.map((r) => r.instruction), new Utf8()),
    input: vectorFromArray(ROWS.map((r) => r.input), new Utf8()),
    output: vectorFromArray(ROWS.map((r) => r.output), new Utf8()),
  });
  return [tableToIPC(alpaca, 'file'), tableToIPC(alpaca, 'stream'), tableToIPC(conversations, 'stream')];
}

const jsonSeeds = (): Uint8Array[] => [
  json(ROWS),
  json(ROWS[0]),
  text(ROWS.map((r) => JSON.stringify(r)).join('\n')), // JSON Lines under a .json name
  json([{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }]),
];
const jsonlSeeds = (): Uint8Array[] => [
  text(ROWS.map((r) => JSON.stringify(r)).join('\n') + '\n'),
  text('\ufeff' + JSON.stringify({ prompt: 'p', response: 'r' }) + '\r\n' + JSON.stringify({ prompt: 'p2', response: 'r2' })),
  text([{ conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }].map((r) => JSON.stringify(r)).join('\n')),
];
const csvSeeds = (): Uint8Array[] => [
  text(csvOf(ROWS)),
  text(csvOf([{ prompt: 'a, "quoted" one', response: 'line\nbreak' }, { prompt: 'b', response: 'c' }])),
];

/** The dataset readers end to end: container, encoding, records, then the SFT format (odd inputs skip bad records). */
const readDataset = async (path: string, index: number): Promise<unknown> => {
  const skipBadRecords = index % 2 === 1;
  if (index % 3 === 0) return readRecords(path, { skipBadRecords });
  return loadSftSamples(path, { skipBadRecords });
};

function datasetTargets(kind: 'json' | 'jsonl' | 'csv' | 'arrow', seeds: () => Uint8Array[]): FuzzTarget[] {
  const structure: Structure = kind === 'arrow' || kind === 'csv' ? 'bytes' : 'json';
  return [false, true].map((gzip) => ({
    name: `${kind}${gzip ? '.gz' : ''}`,
    file: `data.${kind}${gzip ? '.gz' : ''}`,
    structure,
    gzip,
    seeds,
    parse: readDataset,
  }));
}

export const TARGETS: FuzzTarget[] = [
  {
    name: 'safetensors',
    file: 'model.safetensors',
    structure: 'safetensors',
    seeds: (dir) => [
      safetensorsBytes(dir, 'seed1.safetensors', smallTensors(), { format: 'pt' }),
      safetensorsBytes(dir, 'seed2.safetensors', new Map([['w', { shape: [0], data: new Float32Array(0) }], ['v', { shape: [], data: Float32Array.of(3) }]]), {}),
    ],
    parse: async (path) => readSafetensors(path),
  },
  {
    name: 'safetensors-index',
    file: 'model.safetensors.index.json',
    structure: 'json',
    seeds: (dir) => {
      const t = smallTensors();
      const names = [...t.keys()];
      safetensorsBytes(dir, 'model-00001-of-00002.safetensors', new Map(names.slice(0, 2).map((n) => [n, t.get(n)!])));
      safetensorsBytes(dir, 'model-00002-of-00002.safetensors', new Map(names.slice(2).map((n) => [n, t.get(n)!])));
      const weight_map = Object.fromEntries(names.map((n, i) => [n, `model-0000${i < 2 ? 1 : 2}-of-00002.safetensors`]));
      return [json({ metadata: { total_size: 60 }, weight_map })];
    },
    parse: async (path) => readShardedSafetensors(path),
  },
  {
    name: 'config.json',
    file: 'config.json',
    structure: 'json',
    seeds: () => ['gpt2', 'opt', 'bloom', 'llama'].map((a) => readFileSync(join(FIXTURES, 'hf', a, 'config.json'))),
    // Validation must leave a config the model code can lay out: the parameter shapes are computed (no allocation).
    parse: async (path) => {
      const config = readConfig(dirname(path));
      return parameterShapes(config, buildSpec(config)).size;
    },
  },
  {
    name: 'tokenizer.json',
    file: 'tokenizer.json',
    structure: 'json',
    seeds: () => [
      readFileSync(join(FIXTURES, 'hf', 'gpt2', 'tokenizer.json')),
      readFileSync(join(FIXTURES, 'hf', 'llama', 'tokenizer.json')),
      json(buildCharTokenizerJson('First Citizen:\nBefore we proceed any further, hear me speak.\n你好')),
    ],
    // A tokenizer that loads must also encode and decode: a failure there would surface mid-training.
    parse: async (path) => {
      const tok = await Tokenizer.fromDir(dirname(path));
      const ids = tok.encode('Hello, world! 你好 <|endoftext|>\n');
      return tok.decode(ids, { skipSpecialTokens: true });
    },
  },
  ...datasetTargets('json', jsonSeeds),
  ...datasetTargets('jsonl', jsonlSeeds),
  ...datasetTargets('csv', csvSeeds),
  ...datasetTargets('arrow', arrowSeeds),
];

/** Creates the target's working directory and returns its seeds. */
export function prepareTarget(target: FuzzTarget, root: string): { dir: string; path: string; seeds: Uint8Array[] } {
  const dir = join(root, target.name);
  mkdirSync(dir, { recursive: true });
  // Plain copies: mutations must never reach the seeds themselves.
  const seeds = target.seeds(dir).map((b) => new Uint8Array(b));
  return { dir, path: join(dir, target.file), seeds };
}

/** Writes one input where the target reads it. */
export function writeInput(path: string, bytes: Uint8Array): void {
  writeFileSync(path, bytes);
}
