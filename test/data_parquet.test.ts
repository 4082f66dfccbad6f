/**
 * Reading what the Hub serves, for every stage: parquet files (snappy, zstd, gzip; made by
 * test/fixtures/parquet/make_parquet_fixtures.py with pyarrow), shard folders (parquet and JSONL), a DatasetDict whose
 * test split becomes the evaluation set, and TRL's standard, conversational and unpaired preference formats.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { datasetSplits, detectFileKind, heldOutSplit, loadPreferencePairs, loadUnpairedExamples, readRecords } from '../src/data/index.js';
import { loadDpoData } from '../src/dpo/load_data.js';
import { DPO_DEFAULTS } from '../src/dpo/config.js';
import { loadRewardData } from '../src/reward/dataset.js';
import { REWARD_DEFAULTS } from '../src/reward/config.js';

const P = 'test/fixtures/parquet';
const tmp = mkdtempSync(join(tmpdir(), 'parquet-'));

describe('parquet files', () => {
  it('reads every row group of a snappy file, each record located by its row', async () => {
    expect(detectFileKind(join(P, 'pairs_snappy.parquet'))).toBe('parquet');
    const { records } = await readRecords(join(P, 'pairs_snappy.parquet'));
    expect(records).toHaveLength(6); // two row groups of 3
    expect(records[4]!.value).toEqual({ prompt: 'Question 4: what is 4 plus 4?', chosen: 'It is 8.', rejected: 'It is 9.' });
    expect(records[4]!.location).toEqual({ file: join(P, 'pairs_snappy.parquet'), index: 4 });
    expect((await readRecords(join(P, 'pairs_snappy.parquet'), { maxRecords: 2 })).records).toHaveLength(2);
    const pairs = await loadPreferencePairs(join(P, 'pairs_snappy.parquet'));
    expect(pairs.format).toBe('rm_static'); // TRL's standard format is rm-static's layout
    expect(pairs.pairs[0]!.prompt).toEqual([{ role: 'user', content: 'Question 0: what is 0 plus 0?' }]);
  });

  it("reads TRL's conversational format (zstd): message lists, prompt explicit or implied", async () => {
    const r = await loadPreferencePairs(join(P, 'conversational_zstd.parquet'));
    expect(r.format).toBe('conversational');
    expect(r.pairs[2]).toMatchObject({ prompt: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name colour 2.' }], chosen: 'Colour 2 is blue.', rejected: "I don't know colour 2." });
    // UltraFeedback-binarized style: no prompt column, chosen/rejected are whole conversations sharing it
    const file = join(tmp, 'implicit.json');
    const conv = (a: string) => [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }, { role: 'user', content: 'how?' }, { role: 'assistant', content: a }];
    writeFileSync(file, JSON.stringify([{ chosen: conv('well'), rejected: conv('badly') }]));
    const implicit = await loadPreferencePairs(file);
    expect(implicit.pairs[0]).toMatchObject({ prompt: conv('').slice(0, 3), chosen: 'well', rejected: 'badly' });
    writeFileSync(file, JSON.stringify([{ prompt: [{ role: 'user', content: 'q' }], chosen: [{ role: 'user', content: 'x' }], rejected: [{ role: 'assistant', content: 'y' }] }]));
    await expect(loadPreferencePairs(file)).rejects.toThrow(/implicit\.json.*field "chosen" must end in exactly one assistant message/);
  });

  it("reads TRL's unpaired (KTO) format (gzip, int64 column); pairs become two labelled examples", async () => {
    const { records } = await readRecords(join(P, 'kto_gzip.parquet'));
    expect(records[1]!.value).toEqual({ id: 11, prompt: 'Say 1.', completion: 'no', label: false });
    const r = await loadUnpairedExamples(join(P, 'kto_gzip.parquet'));
    expect(r.format).toBe('unpaired');
    expect(r.examples.map((e) => e.desirable)).toEqual([true, false, true, false]);
    const fromPairs = await loadUnpairedExamples(join(P, 'pairs_snappy.parquet'));
    expect(fromPairs.examples).toHaveLength(12);
    expect(fromPairs.examples.slice(0, 2).map((e) => [e.completion, e.desirable])).toEqual([['It is 0.', true], ['It is 1.', false]]);
    const bad = join(tmp, 'bad_label.jsonl');
    writeFileSync(bad, '{"prompt": "a", "completion": "b", "label": "yes"}\n');
    await expect(loadUnpairedExamples(bad)).rejects.toThrow(/bad_label\.jsonl:1: field "label" must be true or false/);
  });

  it('a file that is not parquet is an error naming it', async () => {
    const f = join(tmp, 'broken.parquet');
    writeFileSync(f, 'not parquet at all');
    await expect(readRecords(f)).rejects.toThrow(/broken\.parquet: not a readable parquet file/);
  });
});

describe('shard folders and splits', () => {
  it("reads a Hub dataset's shard folder: the train shards in order, or the split asked for", async () => {
    const dir = join(P, 'hub');
    expect(detectFileKind(dir)).toBe('shards');
    expect(datasetSplits(dir)).toEqual(['test', 'train']);
    expect(heldOutSplit(dir)).toBe('test');
    const train = await readRecords(dir);
    expect(train.records.map((r) => r.value.chosen)).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `It is ${2 * i}.`));
    expect(train.records[5]!.location).toEqual({ file: join(dir, 'data', 'train-00001-of-00002.parquet'), index: 1 });
    expect((await readRecords(dir, { split: 'test' })).records).toHaveLength(2);
    await expect(readRecords(dir, { split: 'validation' })).rejects.toThrow(/split "validation" not found; the shards' splits are test, train/);
  });

  it('reads JSONL shards the same way', async () => {
    const dir = join(tmp, 'jsonl_shards');
    mkdirSync(dir);
    writeFileSync(join(dir, 'train-00000-of-00002.jsonl'), '{"i": 0}\n{"i": 1}\n');
    writeFileSync(join(dir, 'train-00001-of-00002.jsonl'), '{"i": 2}\n');
    expect((await readRecords(dir)).records.map((r) => r.value.i)).toEqual([0, 1, 2]);
  });

  it("a DatasetDict's test split (or a shard folder's) is the evaluation set unless --eval_dataset says otherwise", async () => {
    const dir = join(tmp, 'dict');
    const table = (n: number, tag: string) => new Table({
      prompt: vectorFromArray(Array.from({ length: n }, (_, i) => `${tag} q${i}`), new Utf8()),
      chosen: vectorFromArray(Array.from({ length: n }, (_, i) => `good ${i}`), new Utf8()),
      rejected: vectorFromArray(Array.from({ length: n }, (_, i) => `bad ${i}`), new Utf8()),
    });
    for (const [split, n] of [['train', 5], ['test', 2]] as const) {
      mkdirSync(join(dir, split), { recursive: true });
      writeFileSync(join(dir, split, 'data-00000-of-00001.arrow'), tableToIPC(table(n, split), 'stream'));
      writeFileSync(join(dir, split, 'state.json'), JSON.stringify({ _data_files: [{ filename: 'data-00000-of-00001.arrow' }] }));
    }
    writeFileSync(join(dir, 'dataset_dict.json'), JSON.stringify({ splits: ['train', 'test'] }));
    const base = { ...DPO_DEFAULTS, dataset: dir };
    const d = await loadDpoData(base);
    expect(d.pairs!.train).toHaveLength(5); // the whole train split: nothing held out of it
    expect(d.pairs!.eval.map((p) => p.prompt[0]!.content)).toEqual(['test q0', 'test q1']);
    expect(d.notes.join('\n')).toMatch(/its "test" split is the evaluation set/);
    const other = await loadDpoData({ ...base, evalDataset: join(P, 'pairs_snappy.parquet') });
    expect(other.pairs!.eval).toHaveLength(6);
    const hub = await loadDpoData({ ...base, dataset: join(P, 'hub') });
    expect([hub.pairs!.train.length, hub.pairs!.eval.length]).toEqual([7, 2]);
    // the reward stage reads it the same way
    const rm = await loadRewardData({ ...REWARD_DEFAULTS, dataset: dir });
    expect([rm.train.length, rm.eval.length]).toEqual([5, 2]);
    expect(rm.eval[0]!.prompt[0]!.content).toBe('test q0');
  });
});
