/**
 * generation_config.json: EOS lists (a row stops at any of them), sampling defaults that apply unless a flag
 * overrides them (in `inference` too), refused decoding fields, and the file carried over on save.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { tf } from '../src/engine/tf.js';
import { loadPretrained, savePretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { parseGenerationConfig, resolveSampling } from '../src/models/generation_config.js';
import { fixtureDir } from './helpers/fixtures.js';

const run = promisify(execFile);

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('generation_config.json', () => {
  it('eos_token_id as a list: each row stops at the first of them it generates', () => {
    const { model } = loadPretrained(fixtureDir('qwen3'));
    const prompts = [[42, 435, 78, 81, 563, 498], [7, 8, 9, 10, 11, 12]];
    const free = generate(model, prompts, null, { maxNewTokens: 6, eosTokenId: null }).sequences.map((s) => s.slice(6));
    const eos = [free[0]![1]!, free[1]![3]!];
    model.generationDefaults = parseGenerationConfig({ eos_token_id: eos, pad_token_id: 0 }, 'generation_config.json');
    const out = generate(model, prompts, null, { maxNewTokens: 6 });
    const ends = free.map((row) => row.findIndex((t) => eos.includes(t)));
    expect(out.actionMask[0]!.length).toBe(Math.max(...ends) + 1); // generation ends once every row has stopped
    for (let b = 0; b < 2; b++) {
      const end = ends[b]!;
      expect(end).toBeGreaterThanOrEqual(1); // the stop comes from the list, not at once
      expect(out.actionMask[b]).toEqual(out.actionMask[b]!.map((_, i) => (i <= end ? 1 : 0)));
      expect(out.sequences[b]!.slice(6, 7 + end)).toEqual(free[b]!.slice(0, end + 1));
    }
    model.dispose();
  });

  it('sampling defaults from the file unless a flag is given; HF defaults otherwise', () => {
    const gen = parseGenerationConfig({ do_sample: true, temperature: 0.6, top_p: 0.9, max_new_tokens: 7, eos_token_id: [1, 2] }, 'g.json');
    const r = resolveSampling({ temperature: 1.2 }, gen, 64);
    expect(r).toMatchObject({ doSample: true, temperature: 1.2, topK: 50, topP: 0.9, repetitionPenalty: 1, maxNewTokens: 7 });
    expect(r.fromFile).toEqual(['max_new_tokens=7', 'do_sample=true', 'top_p=0.9']);
    expect(resolveSampling({ maxLength: 30 }, gen, 64)).toMatchObject({ maxNewTokens: undefined, maxLength: 30 });
    expect(resolveSampling({}, null, 64)).toMatchObject({ doSample: false, temperature: 1, topK: 50, topP: 1, maxNewTokens: 64 });
  });

  it('refuses decoding fields it does not implement, and bad values, by name', () => {
    expect(() => resolveSampling({}, parseGenerationConfig({ num_beams: 4 }, 'g.json'), 64)).toThrow(/g.json: "num_beams": 4 is not supported/);
    expect(() => resolveSampling({}, parseGenerationConfig({ min_p: 0.05 }, 'g.json'), 64)).toThrow(/"min_p"/);
    expect(resolveSampling({}, parseGenerationConfig({ num_beams: 1, typical_p: 1 }, 'g.json'), 64).doSample).toBe(false);
    expect(() => parseGenerationConfig({ top_p: 2 }, 'g.json')).toThrow(/g.json: "top_p" must be in \(0, 1\]/);
    expect(() => parseGenerationConfig({ eos_token_id: ['x'] }, 'g.json')).toThrow(/"eos_token_id" must be a token id or a list/);
  });

  it('a saved model keeps its generation_config.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gencfg-'));
    cpSync(fixtureDir('llama3'), join(dir, 'src'), { recursive: true });
    const raw = { eos_token_id: [4, 5], do_sample: true, temperature: 0.7, pad_token_id: 1 };
    writeFileSync(join(dir, 'src', 'generation_config.json'), JSON.stringify(raw));
    const { model } = loadPretrained(join(dir, 'src'));
    savePretrained(model, join(dir, 'out'));
    expect(JSON.parse(readFileSync(join(dir, 'out', 'generation_config.json'), 'utf8'))).toEqual(raw);
    model.dispose();
  });

  it('inference: the file sets sampling; --do_sample false overrides it (greedy, as generate)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gencfg-'));
    cpSync(fixtureDir('llama3'), dir, { recursive: true });
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 50, max_new_tokens: 5, eos_token_id: 4 }));
    const tsx = resolve('node_modules/.bin/tsx');
    const args = ['src/cli/inference.ts', '--pretrain', dir, '--input', 'hello world', '--json', '--backend', 'cpu'];
    const [sampled, greedy] = await Promise.all([run(tsx, args), run(tsx, [...args, '--do_sample', 'false'])]);
    expect(sampled.stderr).toContain('decoding defaults from');
    expect(sampled.stderr).toContain('do_sample=true, temperature=50');
    expect(greedy.stderr).not.toContain('do_sample=');
    const g = JSON.parse(greedy.stdout) as { input_ids: number[]; output_ids: number[] };
    const s = JSON.parse(sampled.stdout) as { input_ids: number[]; output_ids: number[] };
    expect(g.output_ids.length).toBeLessThanOrEqual(g.input_ids.length + 5);
    const { model } = loadPretrained(dir);
    const ref = generate(model, [g.input_ids], null, { maxNewTokens: 5 });
    expect(g.output_ids).toEqual(ref.sequences[0]!.slice(0, g.output_ids.length));
    expect(s.output_ids).not.toEqual(g.output_ids); // temperature 50 over 600 tokens: not the greedy answer
    model.dispose();
  }, 60_000);
});
