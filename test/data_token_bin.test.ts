import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { buildPrepareCommand, runPrepare } from '../src/cli/prepare.js';
import { padBatch } from '../src/data/batching.js';
import { prepareTokenBins } from '../src/data/prepare_bins.js';
import { TokenBlockLoader, readTokenBin, sequentialBlocks, writeTokenBin } from '../src/data/token_bin.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { charTokenizerFor } from '../src/sft/from_config.js';
import { fixtureDir } from './helpers/fixtures.js';
import { DATASETS, SHAKESPEARE } from './sft_helpers.js';

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

  it('random blocks are contiguous slices, seeded, the same after a restore, and different per rank', () => {
    const a = make();
    expect(a.batchesPerEpoch).toBe(25); // 100 blocks of 10 per epoch, 4 per batch
    const first = [a.next().batch, a.next().batch, a.next().batch];
    for (const row of first.flatMap((b) => b.inputIds)) {
      expect(row).toHaveLength(10);
      for (let i = 1; i < row.length; i++) expect(row[i]).toBe((row[0]! + i) % 500);
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
    expect(r0.batchesPerEpoch).toBe(12);
    const firstRows = (l: TokenBlockLoader) => l.next().batch.inputIds.map((r) => r[0]);
    expect(firstRows(r0)).toEqual([0, 10, 20, 30]);
    expect(firstRows(r1)).toEqual([40, 50, 60, 70]);
    expect(firstRows(r0)).toEqual([80, 90, 100, 110]);
    expect(sequentialBlocks(tokens, 300).map((b) => b.inputIds[0])).toEqual([0, 300, 100]);
  });

  it('a file too small for one batch is an error naming it', () => {
    expect(() => make({ blockSize: 400 })).toThrow(/t\.bin: 1000 tokens make 2 block\(s\) of --max_len 400/);
  });
});

it('charTokenizerFor matches nanoGPT shakespeare_char ids on its first line', () => {
  const tok = charTokenizerFor([readFileSync(join(DATASETS, 'full', 'tinyshakespeare.txt'), 'utf8')]);
  // nanoGPT: "First Citizen" -> [18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52] with its 65-character vocabulary
  expect(tok.encode('First Citizen', { addSpecialTokens: false }).slice(0, 13)).toEqual([18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52]);
});
