import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Field, List, Struct, Table, tableToIPC, Utf8, Int64, vectorFromArray } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { detectFileKind, formatLocation, iterateRecords, readRecords } from '../src/data/index.js';

const DS = 'datasets';
const tmp = mkdtempSync(join(tmpdir(), 'data-readers-'));
function write(name: string, content: string | Uint8Array): string {
  const path = join(tmp, name);
  writeFileSync(path, content);
  return path;
}

describe('readRecords on the real slices', () => {
  it('reads a JSON array with per-record indices (alpaca_en_demo, 200 records)', async () => {
    const { records, skipped } = await readRecords(`${DS}/sft/alpaca_en_demo.json`);
    expect(records).toHaveLength(200);
    expect(skipped).toBe(0);
    expect(records[0]!.value.instruction).toBe('Describe a process of making crepes.');
    expect(records[199]!.location).toEqual({ file: `${DS}/sft/alpaca_en_demo.json`, index: 199 });
  });

  it('reads JSONL with line numbers (self-instruct seed tasks)', async () => {
    const { records } = await readRecords(`${DS}/sft/self-instruct-seed_tasks.jsonl`);
    expect(records).toHaveLength(50);
    expect(records[1]!.value.id).toBe('seed_task_1');
    expect(formatLocation(records[1]!.location)).toBe(`${DS}/sft/self-instruct-seed_tasks.jsonl:2`);
  });

  it('reads BELLE dev1K.json, which is JSON Lines under a .json name', async () => {
    const { records } = await readRecords(`${DS}/sft/belle-dev1K.json`);
    expect(records).toHaveLength(100);
    expect(records[2]!.location.line).toBe(3);
    expect(String(records[0]!.value.instruction)).toMatch(/^题目：小明每天早上/);
  });

  it('reads gzipped JSONL (hh-rlhf) and honours maxRecords', async () => {
    const all = await readRecords(`${DS}/preference/hh-rlhf-harmless-base-test.jsonl.gz`);
    expect(all.records).toHaveLength(300);
    expect(String(all.records[0]!.value.chosen)).toMatch(/^\n\nHuman: what are some pranks with a pen/);
    const some = await readRecords(`${DS}/preference/hh-rlhf-harmless-base-test.jsonl.gz`, { maxRecords: 7 });
    expect(some.records.map((r) => r.location.line)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('reads the prompts CSV with its header as keys and the starting line of each row', async () => {
    const { records } = await readRecords(`${DS}/prompts/awesome-chatgpt-prompts.csv`);
    expect(records).toHaveLength(209);
    expect(Object.keys(records[0]!.value)).toEqual(['act', 'prompt']);
    expect(records[0]!.value.act).toBe('An Ethereum Developer');
    expect(records[0]!.location.line).toBe(2);
  });

  it('reads a gzipped JSON array', async () => {
    const path = write('arr.json.gz', gzipSync(JSON.stringify([{ text: 'x' }, { text: 'y' }])));
    const { records } = await readRecords(path);
    expect(records.map((r) => [r.value.text, r.location.index])).toEqual([['x', 0], ['y', 1]]);
  });

  it('reads a .txt file as one text record', async () => {
    const { records } = await readRecords(`${DS}/pretrain/tinyshakespeare.txt`);
    expect(records).toHaveLength(1);
    expect(String(records[0]!.value.text).startsWith('First Citizen:\nBefore we proceed')).toBe(true);
  });

  it('streams records lazily', async () => {
    const seen: number[] = [];
    for await (const r of iterateRecords(`${DS}/sft/self-instruct-seed_tasks.jsonl`)) {
      seen.push(r.location.line!);
      if (seen.length === 3) break;
    }
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe('bad input', () => {
  it('a JSONL line that is not JSON is an error naming FILE:LINE, or skipped and counted', async () => {
    const path = write('bad.jsonl', '{"text": "a"}\n\n{"text": "b"\n{"text": "c"}\n');
    await expect(readRecords(path)).rejects.toThrow(`${path}:3: invalid JSON (`);
    const skippedAt: string[] = [];
    const r = await readRecords(path, { skipBadRecords: true, onSkip: (loc) => skippedAt.push(formatLocation(loc)) });
    expect(r.records.map((x) => x.value.text)).toEqual(['a', 'c']);
    expect(r.skipped).toBe(1);
    expect(skippedAt).toEqual([`${path}:3`]);
    expect(r.skippedExamples[0]).toMatch(/:3: invalid JSON/);
  });

  it('the same in a gzipped JSONL file', async () => {
    const path = write('bad.jsonl.gz', gzipSync('{"a":1}\nnot json\n'));
    await expect(readRecords(path)).rejects.toThrow(`${path}:2: invalid JSON (`);
  });

  it('an empty file is a clear error, whatever its kind', async () => {
    for (const name of ['empty.json', 'empty.jsonl', 'empty.csv', 'empty.txt', 'blank.jsonl']) {
      const path = write(name, name.startsWith('blank') ? '\n  \n' : '');
      await expect(readRecords(path), name).rejects.toThrow(`${path}: empty file`);
    }
    await expect(readRecords(write('empty-array.json', '[]'))).rejects.toThrow(/no records: the JSON array is empty/);
    await expect(readRecords(write('header-only.csv', 'act,prompt\n'))).rejects.toThrow(/no records: only a header row/);
  });

  it('a ragged CSV row names the file, line and field; skipBadRecords skips and counts it', async () => {
    const path = write('ragged.csv', 'act,prompt\n"A","multi\nline prompt"\n"B"\n"C","p3","extra"\n"D","p4"\n');
    await expect(readRecords(path)).rejects.toThrow(`${path}:4: ragged row: 1 field(s) but the header has 2 (act, prompt); field "prompt" is missing`);
    const r = await readRecords(path, { skipBadRecords: true });
    expect(r.records.map((x) => x.value.act)).toEqual(['A', 'D']);
    expect(r.records.map((x) => x.location.line)).toEqual([2, 6]);
    expect(r.skipped).toBe(2);
    expect(r.skippedExamples[1]).toMatch(/ragged.csv:5: ragged row: 3 field\(s\).*field 3 has no column/);
  });

  it('a JSON array with a syntax error reports the line; a non-object element is a bad record', async () => {
    const broken = write('broken.json', '[\n  {"a": 1},\n  {"a": 2,,}\n]\n');
    await expect(readRecords(broken)).rejects.toThrow(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: invalid JSON`));
    const mixed = write('mixed.json', '[{"a": 1}, 42, "just text"]');
    await expect(readRecords(mixed)).rejects.toThrow(`${mixed}[1]: expected a JSON object, got number`);
    const r = await readRecords(mixed, { skipBadRecords: true });
    expect(r.records.map((x) => x.value)).toEqual([{ a: 1 }, { text: 'just text' }]);
    expect(r.skipped).toBe(1);
  });

  it('all records bad is an error even with skipBadRecords', async () => {
    await expect(readRecords(write('allbad.jsonl', 'x\ny\n'), { skipBadRecords: true })).rejects.toThrow(/no valid records: all 2 were malformed/);
  });

  it('an unknown extension says which ones are known', () => {
    expect(() => detectFileKind(write('data.xyz', 'a'))).toThrow(/unknown file type "\.xyz".*\.jsonl/);
  });
});

describe('Arrow', () => {
  const turn = new Struct([new Field('from', new Utf8(), true), new Field('value', new Utf8(), true)]);
  function conversationTable(ids: number[]): Table {
    return new Table({
      id: vectorFromArray(ids.map(BigInt), new Int64()),
      conversations: vectorFromArray(
        ids.map((i) => [
          { from: 'human', value: `q${i}` },
          { from: 'gpt', value: `a${i}` },
        ]),
        new List(new Field('item', turn, true)),
      ),
      system: vectorFromArray(ids.map((i) => (i % 2 ? null : `s${i}`)), new Utf8()),
    });
  }

  it('reads Arrow IPC files (file and stream format) into plain objects', async () => {
    for (const format of ['file', 'stream'] as const) {
      const path = write(`t-${format}.arrow`, tableToIPC(conversationTable([0, 1, 2]), format));
      const { records } = await readRecords(path);
      expect(records).toHaveLength(3);
      expect(records[1]!.value).toEqual({ id: 1, conversations: [{ from: 'human', value: 'q1' }, { from: 'gpt', value: 'a1' }], system: null });
      expect(records[2]!.location).toEqual({ file: path, index: 2 });
    }
  });

  it('reads a save_to_disk directory (state.json lists the stream-format shards in order)', async () => {
    const dir = join(tmp, 'saved');
    mkdirSync(dir);
    writeFileSync(join(dir, 'data-00000-of-00002.arrow'), tableToIPC(conversationTable([0, 1]), 'stream'));
    writeFileSync(join(dir, 'data-00001-of-00002.arrow'), tableToIPC(conversationTable([2, 3, 4]), 'stream'));
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({ features: {} }));
    writeFileSync(
      join(dir, 'state.json'),
      JSON.stringify({ _data_files: [{ filename: 'data-00000-of-00002.arrow' }, { filename: 'data-00001-of-00002.arrow' }], _split: null }),
    );
    expect(detectFileKind(dir)).toBe('saved_dataset');
    const { records } = await readRecords(dir);
    expect(records.map((r) => r.value.id)).toEqual([0, 1, 2, 3, 4]);
    expect(records[3]!.location).toEqual({ file: join(dir, 'data-00001-of-00002.arrow'), index: 1 });
  });

  it('picks a split of a saved DatasetDict, and lists the splits when asked for a missing one', async () => {
    const dir = join(tmp, 'saved_dict');
    for (const [split, ids] of [['train', [0, 1, 2]], ['test', [9]]] as const) {
      mkdirSync(join(dir, split), { recursive: true });
      writeFileSync(join(dir, split, 'data-00000-of-00001.arrow'), tableToIPC(conversationTable([...ids]), 'stream'));
      writeFileSync(join(dir, split, 'state.json'), JSON.stringify({ _data_files: [{ filename: 'data-00000-of-00001.arrow' }] }));
    }
    writeFileSync(join(dir, 'dataset_dict.json'), JSON.stringify({ splits: ['train', 'test'] }));
    expect((await readRecords(dir)).records).toHaveLength(3);
    expect((await readRecords(dir, { split: 'test' })).records.map((r) => r.value.id)).toEqual([9]);
    await expect(readRecords(dir, { split: 'validation' })).rejects.toThrow(/split "validation" not found; available splits: train, test/);
  });

  it('a directory that is not a saved dataset is a clear error', async () => {
    const dir = join(tmp, 'not_a_dataset');
    mkdirSync(dir);
    await expect(readRecords(dir)).rejects.toThrow(/not a datasets save_to_disk directory/);
  });
});

describe('text encodings', () => {
  const latin1 = (s: string) => Buffer.from(s, 'latin1');
  it.each([
    ['json', '[{"text": "ok"},\n {"text": "caf\u00e9"}]', 2],
    ['jsonl', '{"text": "ok"}\n{"text": "ok"}\n{"text": "na\u00efve"}\n', 3],
    ['csv', 'prompt,response\nok,ok\nok,ok\nok,ok\nr\u00e9sum\u00e9,x\n', 5],
  ])('Latin-1 %s is an error naming the file and line', async (ext, text, line) => {
    for (const gz of [false, true]) {
      const path = write(`latin1-${ext}.${ext}${gz ? '.gz' : ''}`, gz ? gzipSync(latin1(text)) : latin1(text));
      await expect(readRecords(path)).rejects.toThrow(`${path}:${line}: not valid UTF-8 text`);
    }
  });

  it('locates invalid bytes far into a large file, across read chunks', async () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `{"text": "line ${i} ñ"}`);
    lines[15_000] = '{"text": "caf\u00e9"}';
    const bytes = Buffer.concat(lines.map((l, i) => (i === 15_000 ? latin1(l + '\n') : Buffer.from(l + '\n'))));
    const path = write('big-latin1.jsonl', bytes);
    await expect(readRecords(path)).rejects.toThrow(`${path}:15001: not valid UTF-8`);
  });

  it('keeps UTF-8 characters split across read chunks intact', async () => {
    const text = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ text: `第${i}行 🤗` })).join('\n');
    const { records } = await readRecords(write('cjk.jsonl', text));
    expect(records).toHaveLength(5000);
    expect(records[4321]!.value.text).toBe('第4321行 🤗');
  });

  it('decodes UTF-16 with a BOM (both byte orders) and strips a UTF-8 BOM', async () => {
    const text = 'prompt,response\nhé,là\n';
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const be = Buffer.from(le);
    be.swap16();
    for (const [name, bytes] of [['le.csv', le], ['be.csv', be], ['bom8.csv', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])]] as const) {
      const { records } = await readRecords(write(name, bytes));
      expect(records.map((r) => r.value), name).toEqual([{ prompt: 'hé', response: 'là' }]);
    }
    const jsonl = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text": "a"}\n{"text": "ü"}\n', 'utf16le')]);
    const { records } = await readRecords(write('u16.jsonl', jsonl));
    expect(records.map((r) => [r.value.text, r.location.line])).toEqual([['a', 1], ['ü', 2]]);
    const odd = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text": "a"}', 'utf16le'), Buffer.from([0x41])]);
    const oddPath = write('odd.jsonl', odd);
    await expect(readRecords(oddPath)).rejects.toThrow(`${oddPath}:1: not valid UTF-16LE text`);
  });
});

describe('broken .gz files', () => {
  const body = '{"text": "a"}\n'.repeat(2000);
  it.each(['jsonl', 'csv', 'json', 'txt', 'arrow'])('a truncated or non-gzip .%s.gz names the file', async (ext) => {
    const whole = gzipSync(ext === 'csv' ? 'text\n' + 'a\n'.repeat(4000) : body);
    const cut = write(`cut.${ext}.gz`, whole.subarray(0, Math.floor(whole.length / 2)));
    await expect(readRecords(cut)).rejects.toThrow(`${cut}: truncated gzip file`);
    const plain = write(`plain.${ext}.gz`, ext === 'csv' ? 'text\na\n' : body);
    await expect(readRecords(plain)).rejects.toThrow(`${plain}: not a valid gzip file (incorrect header check)`);
  });

  it('a missing file is an error naming it', async () => {
    const missing = join(tmp, 'missing.jsonl.gz');
    await expect(readRecords(missing)).rejects.toThrow(`${missing}: cannot read the file (ENOENT`);
  });
});

describe('CSV quotes', () => {
  it('reports an unclosed quote at the line where it opened', async () => {
    const path = write('quote.csv', 'prompt,response\na,b\nc,"never closed\nd,e\nf,g\nh,i\nj,k\n');
    await expect(readRecords(path)).rejects.toThrow(`${path}:3: invalid CSV: a quoted field opened on line 3 is never closed`);
  });
});
