/** Shared bits of the SFT tests: dataset paths, temp dirs, a quiet run config on the gpt2 fixture. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SftConfigInput } from '../src/sft/index.js';
import { fixtureDir } from './helpers/fixtures.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DATASETS = join(REPO, 'datasets');
export const ALPACA_EN = join(DATASETS, 'sft', 'alpaca_en_demo.json');
export const SHAKESPEARE = join(DATASETS, 'pretrain', 'tinyshakespeare.txt');

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `sft-${tag}-`));
}

/** Small, fast settings on the gpt2 fixture (64 positions): plain template so prompts leave room for replies. */
export function gpt2Config(work: string, over: Partial<SftConfigInput> = {}): SftConfigInput {
  return {
    pretrain: fixtureDir('gpt2'),
    dataset: [ALPACA_EN],
    maxDatasetsSize: 24,
    savePath: join(work, 'out'),
    cacheDir: join(work, 'cache'),
    maxLen: 64,
    promptTemplate: 'plain',
    batchSize: 2,
    maxEpochs: 1,
    lr: 2e-3,
    warmupRatio: 0,
    backend: 'cpu',
    ...over,
  };
}

/** Collects log lines. */
export function logSink(): { lines: string[]; log: (m: string) => void } {
  const lines: string[] = [];
  return { lines, log: (m: string) => lines.push(m) };
}

/** A small alpaca-format JSONL of short records (about 20 tokens each), for tests that only need many cheap steps. */
export function writeNumbersJsonl(dir: string, n: number): string {
  const file = join(dir, 'numbers.jsonl');
  const words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
  const lines = Array.from({ length: n }, (_, i) =>
    JSON.stringify({ instruction: `Spell the number ${i}.`, input: '', output: `${i} is ${words[i % 10]}${i >= 10 ? ` ${words[Math.floor(i / 10) % 10]}` : ''}.` }),
  );
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
