import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { buildPrepareCommand, runPrepare } from '../src/cli/prepare.js';
import { padBatch } from '../src/data/batching.js';
import { prepareTokenBins } from '../src/data/prepare_bins.js';
import { TokenBlockLoader, blockAt, randomBlocks, readTokenBin, sequentialBlocks, writeTokenBin } from '../src/data/token_bin.js';
import { Rng } from '../src/engine/rng.js';
import { tf } from '../src/engine/tf.js';
import { crossEntropy } from '../src/models/ops/loss.js';
import { SftTrainer } from '../src/sft/index.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { charTokenizerFor } from '../src/sft/from_config.js';
import { fixtureDir } from './helpers/fixtures.js';
import { DATASETS, SHAKESPEARE, gpt2Config } from './sft_helpers.js';

const TEXT = readFileSync(SHAKESPEARE, 'utf8').slice(0, 6000);
const tmp = (tag: string) => mkdtempSync(join(tmpdir(), `bin-${tag}-`));

describe('prepare → train.bin / val.bin', () => {
  it('the `prepare` command writes char-level files whose ids are the tokenized 90/10 split, and meta.json', async () => {
    const dir = tmp('cli');
    const input = join(dir, 'input.txt');
    writeFileSync(input, TEXT);
    const out = join(dir, 'data');
    // the `prepare` command's own parsing and run, in this process
    const cmd = buildPrepareCommand().parse([input, '--tokenizer', 'char', '--output_dir', out], { from: 'user' });
    const printed = vi.spyOn(console, 'log').mockImplementation(() => {});
    await runPrepare(cmd.args, cmd.opts());
    const stdout = printed.mock.calls.map((c) => String(c[0])).join('\n');
    printed.mockRestore();
    const cut = Math.floor(TEXT.length * 0.9); // ASCII text: characters = code units
    const tok = await Tokenizer.fromDir(out); // prepare saves the tokenizer beside the token files
    const train = Array.from(readTokenBin(join(out, 'train.bin')));
    const val = Array.from(readTokenBin(join(out, 'val.bin')));
    expect(train).toEqual(tok.encode(TEXT.slice(0, cut), { addSpecialTokens: false }));
    expect(val).toEqual(tok.encode(TEXT.slice(cut), { addSpecialTokens: false }));
    expect(train.length + val.length).toBe(TEXT.length);
    expect(stdout).toContain(`train has ${train.length.toLocaleString('en')} tokens, val has ${val.length.toLocaleString('en')} tokens`);
    // nanoGPT's vocabulary: the sorted characters get 0..n-1 ("\n" first, then " ")
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { vocab_size: number; itos: Record<string, string>; stoi: Record<string, number> };
    expect(meta.vocab_size).toBe(tok.vocabSize);
    expect([meta.itos['0'], meta.itos['1'], meta.stoi['F']]).toEqual(['\n', ' ', tok.encode('F', { addSpecialTokens: false })[0]]);
    expect(tok.decode(train.slice(0, 14))).toBe(TEXT.slice(0, 14));
  }, 30_000);

  it('with a BPE tokenizer (the gpt2 fixture) and uint32 ids', async () => {
    const dir = tmp('bpe');
    const tok = await Tokenizer.fromDir(fixtureDir('gpt2'));
    const r = prepareTokenBins({ text: TEXT, tokenizer: tok, outDir: dir, valRatio: 0.1, dtype: 'uint32', charVocabulary: false, sources: ['x'] });
    const cut = Math.floor(TEXT.length * 0.9);
    expect(Array.from(readTokenBin(join(dir, 'train.bin'), 'uint32'))).toEqual(tok.encode(TEXT.slice(0, cut), { addSpecialTokens: false }));
    expect(r.valTokens).toBe(tok.encode(TEXT.slice(cut), { addSpecialTokens: false }).length);
  });

  it('rejects ids the dtype cannot hold, files of the wrong size, and ids outside the vocabulary', () => {
    const dir = tmp('bad');
    expect(() => writeTokenBin(join(dir, 'a.bin'), [1, 70000], 'uint16')).toThrow(/70000 at position 1 does not fit uint16/);
    writeFileSync(join(dir, 'odd.bin'), Buffer.from([1, 2, 3]));
    expect(() => readTokenBin(join(dir, 'odd.bin'))).toThrow(/odd\.bin: 3 bytes is not a whole number of uint16/);
    writeTokenBin(join(dir, 'v.bin'), [0, 5, 9]);
    expect(() => readTokenBin(join(dir, 'v.bin'), 'uint16', 8)).toThrow(/v\.bin: token id 9 at position 2 is outside the tokenizer's 8 tokens/);
  });
});

describe('TokenBlockLoader: nanoGPT get_batch', () => {
  const tokens = Uint16Array.from({ length: 1000 }, (_, i) => i % 500);
  const collate = (xs: { inputIds: number[]; labels: number[] }[]) => padBatch(xs, { padTokenId: 0 });
  const make = (o: Partial<ConstructorParameters<typeof TokenBlockLoader>[2]> = {}) =>
    new TokenBlockLoader(tokens, 't.bin', { blockSize: 10, batchSize: 4, seed: 1, rank: 0, worldSize: 1, sequential: false, collate, ...o });

  it('a block is nanoGPT\'s x = data[i:i+T], y = data[i+1:i+T+1]: T inputs, and T targets after the shift', () => {
    const data = Uint16Array.from({ length: 40 }, (_, i) => 100 + 2 * i); // the id tells its offset
    const T = 8;
    const at = (i: number) => Array.from(data.subarray(i, i + T));
    for (const i of [0, 5, data.length - T - 1]) {
      const b = blockAt(data, i, T);
      expect(b.inputIds).toEqual(at(i));
      expect(b.labels.slice(1)).toEqual(at(i + 1)); // the targets the loss takes (labels shifted by one)
    }
    expect(() => blockAt(data, data.length - T, T)).toThrow(/8 inputs and 8 targets at offset 32 runs past the 40 tokens/);
    // random offsets in [0, n - T): the last one ends its targets on the last token
    const rows = randomBlocks(data, T, 400, new Rng(3));
    const offsets = new Set(rows.map((r) => (r.inputIds[0]! - 100) / 2));
    for (const r of rows) expect(r.inputIds).toEqual(at((r.inputIds[0]! - 100) / 2));
    expect(Math.max(...offsets)).toBe(data.length - T - 1);
    // in order: blocks start every T tokens, each token after the first is a target exactly once
    const seq = sequentialBlocks(data, T);
    expect(seq.map((b) => b.inputIds[0])).toEqual([0, 8, 16, 24].map((i) => data[i]));
    expect(seq.flatMap((b) => b.labels.slice(1))).toEqual(Array.from(data.subarray(1, 33)));
  });

  it('random blocks are contiguous slices, seeded, the same after a restore, and different per rank', () => {
    const a = make();
    expect(a.batchesPerEpoch).toBe(24); // 99 blocks of 10 inputs + 1 target per epoch, 4 per batch
    const first = [a.next().batch, a.next().batch, a.next().batch];
    for (const [r, row] of first.flatMap((b) => b.inputIds).entries()) {
      expect(row).toHaveLength(10);
      for (let i = 1; i < row.length; i++) expect(row[i]).toBe((row[0]! + i) % 500);
      const labels = first[Math.floor(r / 4)]!.labels[r % 4]!;
      expect(labels).toEqual([...row, (row[0]! + 10) % 500]);
    }
    const b = make();
    b.restore({ epoch: 0, index: 2 });
    expect(b.next().batch).toEqual(first[2]);
    expect(make({ rank: 1, worldSize: 2 }).next().batch).not.toEqual(make({ rank: 0, worldSize: 2 }).next().batch);
    expect(make({ seed: 2 }).next().batch).not.toEqual(first[0]);
  });

  it('--sequential walks the blocks in order, ranks interleaved', () => {
    const r0 = make({ sequential: true, worldSize: 2 });
    const r1 = make({ sequential: true, worldSize: 2, rank: 1 });
    expect(r0.batchesPerEpoch).toBe(12); // 99 blocks, 8 per global batch
    const firstRows = (l: TokenBlockLoader) => l.next().batch.inputIds.map((r) => r[0]);
    expect(firstRows(r0)).toEqual([0, 10, 20, 30]);
    expect(firstRows(r1)).toEqual([40, 50, 60, 70]);
    expect(firstRows(r0)).toEqual([80, 90, 100, 110]);
    expect(sequentialBlocks(tokens, 300).map((b) => b.inputIds[0])).toEqual([0, 300, 100]);
    expect(sequentialBlocks(tokens.subarray(0, 900), 300).map((b) => b.inputIds[0])).toEqual([0, 300]); // 600..899 has no target after it
  });

  it('a file too small for one batch is an error naming it', () => {
    expect(() => make({ blockSize: 400 })).toThrow(/t\.bin: 1000 tokens make 2 block\(s\) of --max_len 400/);
    // 1000 tokens hold 10 blocks of 100 inputs, but only 9 with a target after them
    expect(() => make({ blockSize: 100, batchSize: 10 })).toThrow(/1000 tokens make 9 block\(s\) of --max_len 100/);
  });
});

it('charTokenizerFor matches nanoGPT shakespeare_char ids on its first line', () => {
  const tok = charTokenizerFor([readFileSync(join(DATASETS, 'full', 'tinyshakespeare.txt'), 'utf8')]);
  // nanoGPT: "First Citizen" -> [18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52] with its 65-character vocabulary
  expect(tok.encode('First Citizen', { addSpecialTokens: false }).slice(0, 13)).toEqual([18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52]);
});

describe('train_sft on token files: T inputs, T targets per block, never a position past the table', () => {
  it('batches and evaluation: every block of val.bin in order, T targets each, loss as computed by hand', async () => {
    await tf.setBackend('cpu');
    const dir = tmp('sft');
    const T = 64; // the gpt2 fixture's n_positions
    const ids = (n: number, mul: number) => Array.from({ length: n }, (_, i) => (i * mul + 11) % 600);
    writeTokenBin(join(dir, 'train.bin'), ids(2000, 7));
    const val = Uint16Array.from(ids(64 * 3 + 5, 13)); // 3 blocks (the 4th would lack its last target)
    writeTokenBin(join(dir, 'val.bin'), val);
    const trainer = await SftTrainer.create(gpt2Config(dir, {
      dataset: [join(dir, 'train.bin')], evalDataset: [join(dir, 'val.bin')], maxLen: T, batchSize: 2, maxSteps: 1,
    }), { log: () => {}, progress: false });
    const widths: number[] = [];
    const forward = trainer.model.forward.bind(trainer.model);
    trainer.model.forward = (x, o) => (widths.push(x.shape[1]!), forward(x, o));
    try {
      const { batch } = trainer.loader.next();
      expect(batch.inputIds.map((r) => r.length)).toEqual([T, T]);
      expect(batch.labels.map((r) => r.length)).toEqual([T + 1, T + 1]);
      const ev = trainer.evaluate()!;
      expect(ev.tokens).toBe(3 * T);
      // by hand: logits of x = val[kT : kT+T] against y = val[kT+1 : kT+T+1], mean over all 3·T targets
      const want = tf.tidy(() => {
        const x = tf.tensor2d([0, 1, 2].map((k) => Array.from(val.subarray(k * T, k * T + T))), undefined, 'int32');
        const y = tf.tensor1d([0, 1, 2].flatMap((k) => Array.from(val.subarray(k * T + 1, k * T + T + 1))), 'int32');
        const logits = trainer.model.logits(forward(x).hidden);
        return crossEntropy(tf.reshape(logits, [3 * T, logits.shape[2]!]), y).dataSync()[0]!;
      });
      expect(Math.abs(ev.loss - want) / want).toBeLessThan(1e-5);
      trainer.trainStep();
      expect(Math.max(...widths)).toBe(T);
    } finally {
      trainer.model.dispose();
      trainer.optimization.dispose();
    }
  }, 60_000);
});
