/**
 * Bad inputs stop the run before anything is written to --save_path, with the file, the line/index and the field
 * named; --skip_bad_records skips and counts them instead. Unusable flags (ddp/zero2 without MPI, --max_len past the
 * position table, --tokenizer char on a pretrained model) fail the same clean way.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { runSft, trainSft } from '../src/sft/index.js';
import { gpt2Config, logSink, tempDir } from './sft_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const good = (i: number) => ({ instruction: `Say the number ${i}.`, input: '', output: `The number is ${i}.` });

/** The four bad files, each with good records around one bad one. */
function badFiles(dir: string) {
  const jsonl = join(dir, 'bad_line.jsonl');
  writeFileSync(jsonl, [good(1), good(2)].map((r) => JSON.stringify(r)).join('\n') + '\n{"instruction": "x", oops\n' + [good(3), good(4), good(5)].map((r) => JSON.stringify(r)).join('\n') + '\n');
  const missing = join(dir, 'missing_output.json');
  writeFileSync(missing, JSON.stringify([good(1), { instruction: 'no answer here', input: '' }, good(2), good(3), good(4)], null, 2));
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '');
  const csv = join(dir, 'ragged.csv');
  writeFileSync(csv, 'instruction,input,output\nSay one.,,One.\nSay two.,\nSay three.,,Three.\nSay four.,,Four.\nSay five.,,Five.\n');
  return { jsonl, missing, empty, csv };
}

describe('bad data stops the run and writes nothing', () => {
  const dir = tempDir('inputs');
  const files = badFiles(dir);
  const cases: [string, string, RegExp][] = [
    ['a JSONL line that is not JSON', files.jsonl, /bad_line\.jsonl:3: invalid JSON/],
    ['a record without `output`', files.missing, /missing_output\.json\[1\]: missing field "output"/],
    ['an empty file', files.empty, /empty\.jsonl: empty file/],
    ['a CSV with a ragged row', files.csv, /ragged\.csv:3: ragged row: 2 field\(s\) but the header has 3 .*field "output" is missing/],
  ];
  for (const [what, file, message] of cases) {
    it(what, async () => {
      const work = tempDir('bad');
      const config = gpt2Config(work, { dataset: [file], maxDatasetsSize: undefined });
      await expect(runSft(config, { log: () => {}, progress: false })).rejects.toThrow(message);
      expect(existsSync(config.savePath)).toBe(false);
    });
  }

  it('--skip_bad_records skips and counts them in the log, and trains on the rest', async () => {
    // good records: 5, 4 and 4 -> ceil(n / batch 2) steps
    for (const [file, steps] of [[files.jsonl, 3], [files.missing, 2], [files.csv, 2]] as const) {
      const work = tempDir('skip');
      const { lines, log } = logSink();
      const result = await trainSft(gpt2Config(work, { dataset: [file], maxDatasetsSize: undefined, skipBadRecords: true }), { log, progress: false });
      expect(result.steps).toBe(steps);
      expect(lines.some((l) => l.includes(`${file}: skipped 1 bad record(s)`)), lines.join('\n')).toBe(true);
      expect(existsSync(join(work, 'out', 'model.safetensors'))).toBe(true);
    }
  });
});

describe('flags that cannot work fail before anything is written', () => {
  for (const strategy of ['ddp', 'zero2'] as const) {
    it(`--strategy ${strategy} outside mpirun gives a clear error, not a crash`, async () => {
      const work = tempDir(strategy);
      const config = gpt2Config(work, { strategy });
      await expect(runSft(config, { log: () => {} })).rejects.toThrow(new RegExp(`--strategy ${strategy}`));
      expect(existsSync(config.savePath)).toBe(false);
    });
  }

  it('--max_len past the position table, --tokenizer char on a pretrained model, a missing dataset', async () => {
    const work = tempDir('flags');
    const config = gpt2Config(work);
    await expect(runSft({ ...config, maxLen: 128 }, { log: () => {} })).rejects.toThrow(/--max_len 128 exceeds the 64 positions/);
    await expect(runSft({ ...config, tokenizer: 'char' }, { log: () => {} })).rejects.toThrow(/--tokenizer char .*--from_config/);
    await expect(runSft({ ...config, dataset: [join(work, 'nope.json')] }, { log: () => {} })).rejects.toThrow(/nope\.json does not exist/);
    await expect(runSft({ ...config, accumulationSteps: 1000 }, { log: () => {} })).rejects.toThrow(/lower --accumulation_steps/);
    expect(existsSync(config.savePath)).toBe(false);
  });
});
