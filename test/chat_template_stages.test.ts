/**
 * The model's chat template through the stages: SFT takes it by default (and records it), a recorded template wins
 * over it, PPO prompts and `inference --template chat_template` render it with the generation prompt, and `score`
 * gives transformers' reward of exact ids and of a dataset's records.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { chatTemplateOf, resolvePromptTemplate } from '../src/data/index.js';
import { readSafetensors } from '../src/hub/safetensors.js';
import { runSft } from '../src/sft/index.js';
import { preparePrompts } from '../src/ppo/data.js';
import { FIXTURES } from './helpers/fixtures.js';
import { logSink } from './sft_helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'chat-stages-'));
// short, so that conversations fit the fixture's 64 positions; `eos_token` (</s>) ends each turn
const TEMPLATE = "{% for m in messages %}{{ m['role'][0] + ': ' + m['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ 'a:' }}{% endif %}";

/** The llama fixture (its backbone loads everywhere) with a chat template beside its tokenizer. */
function llamaWithTemplate(): string {
  const dir = join(tmp, 'llama-chat');
  cpSync(join(FIXTURES, 'hf', 'llama'), dir, { recursive: true, filter: (src) => !/\/(lora|dpo|prefix|prompt|rm)$/.test(src) });
  writeFileSync(join(dir, 'chat_template.jinja'), TEMPLATE);
  return dir;
}

function cli(script: string, args: string[]): string {
  return execFileSync('npx', ['tsx', `src/cli/${script}.ts`, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('chat templates in the stages', () => {
  const model = llamaWithTemplate();
  const data = join(tmp, 'chat.jsonl');
  writeFileSync(data, [
    { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello.' }, { from: 'human', value: 'Thanks' }, { from: 'gpt', value: 'Sure.' }] },
    { conversations: [{ from: 'human', value: 'Name a color.' }, { from: 'gpt', value: 'Blue.' }] },
  ].map((r) => JSON.stringify(r)).join('\n') + '\n');

  it('SFT uses the model template when no --prompt_template is given and records it in config.json', async () => {
    const { lines, log } = logSink();
    const out = join(tmp, 'sft');
    await runSft({
      pretrain: model, dataset: [data], savePath: out, cacheDir: join(tmp, 'cache'), maxLen: 64, batchSize: 2, maxEpochs: 1,
      lr: 1e-3, warmupRatio: 0, backend: 'cpu',
    }, { log });
    expect(lines.some((l) => l.includes("prompt template: the model's chat_template") && l.includes('chat_template.jinja'))).toBe(true);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { rlhf: Record<string, unknown> };
    expect(config.rlhf).toEqual({ kind: 'sft', prompt_template: 'chat_template' });
    // a template the model was trained with comes before its chat template
    const tokenizer = await Tokenizer.fromDir(out);
    expect(resolvePromptTemplate(undefined, tokenizer, 'alpaca', out).template.name).toBe('chat_template');
    writeFileSync(join(out, 'config.json'), JSON.stringify({ ...config, rlhf: { kind: 'sft', prompt_template: 'alpaca' } }));
    const recorded = resolvePromptTemplate(undefined, tokenizer, 'plain', out);
    expect(recorded.template.name).toBe('alpaca');
    expect(recorded.note).toContain('trained with');
  }, 120_000);

  it('PPO prompts are the template with add_generation_prompt, tokenized whole, no BOS added twice', async () => {
    const dir = join(FIXTURES, 'hf', 'llama3');
    const tokenizer = await Tokenizer.fromDir(dir);
    const template = chatTemplateOf(tokenizer)!;
    const prompts = join(tmp, 'prompts.jsonl');
    writeFileSync(prompts, JSON.stringify({ prompt: 'What is RLHF?' }) + '\n');
    const got = await preparePrompts(prompts, tokenizer, { template, maxInputLen: 256 });
    const text = template.renderText([{ role: 'user', content: 'What is RLHF?' }], true);
    expect(got.texts[0]).toBe(text);
    expect(text.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
    expect(got.prompts[0]).toEqual(tokenizer.encode(text, { addSpecialTokens: false }));
    expect(got.prompts[0]!.filter((id) => id === tokenizer.bosTokenId)).toHaveLength(1);
  });

  it('inference --chat takes the model template by default and says so', () => {
    const r = spawnSync('npx', ['tsx', 'src/cli/inference.ts', '--pretrain', model, '--chat', '--max_new_tokens', '2', '--backend', 'cpu'],
      { encoding: 'utf8', input: 'Hi there\n\n' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("prompt template: the model's chat_template");
    expect(r.stdout).toContain('(template chat_template)');
    expect(r.stdout).toContain('bot> ');
  }, 60_000);

  it('inference --template chat_template encodes the generation prompt as the template renders it, nothing added', () => {
    const out = execFileSync('npx', ['tsx', 'src/cli/inference.ts', '--pretrain', model, '--template', 'chat_template', '--input', 'Hi there',
      '--max_new_tokens', '2', '--json', '--backend', 'cpu'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { input_ids: number[] };
    return Tokenizer.fromDir(model).then((tokenizer) => {
      const text = chatTemplateOf(tokenizer)!.renderText([{ role: 'user', content: 'Hi there' }], true);
      expect(r.input_ids).toEqual(tokenizer.encode(text, { addSpecialTokens: false }));
    });
  }, 60_000);
});

describe('score', () => {
  const rm = join(FIXTURES, 'hf', 'llama', 'rm');

  it("--input_ids gives transformers' reward; --dataset one reward per record, as JSON", () => {
    const t = readSafetensors(join(rm, 'expected.safetensors')).tensors;
    const row0 = Array.from(t.get('input_ids')!.data.subarray(0, 12), Number);
    const expected = t.get('scores')!.data[0]!;
    const one = JSON.parse(cli('score', ['--rm_path', rm, '--input_ids', row0.join(','), '--json', '--backend', 'cpu']).trim()) as { scores: number[] };
    expect(one.scores).toHaveLength(1);
    expect(Math.abs(one.scores[0]! - expected)).toBeLessThan(1e-4 * Math.max(1, Math.abs(expected)));

    const records = join(tmp, 'answers.jsonl');
    writeFileSync(records, ['{"instruction": "hi", "input": "", "output": "yo"}', '{"instruction": "say more", "input": "", "output": "more"}', '{"instruction": "name a color", "input": "", "output": "blue"}'].join('\n') + '\n');
    const many = JSON.parse(cli('score', ['--rm_path', rm, '--dataset', records, '--json', '--batch_size', '2', '--backend', 'cpu']).trim()) as { scores: number[] };
    expect(many.scores).toHaveLength(3);
    expect(many.scores.every(Number.isFinite)).toBe(true);
    expect(new Set(many.scores).size).toBe(3);
  }, 60_000);
});
