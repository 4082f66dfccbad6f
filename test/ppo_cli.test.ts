/** train_prompts: flags (old names included), prompt files as users have them, errors that say what to fix, a CLI run. */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tf } from '../src/engine/tf.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { getTemplate } from '../src/data/templates/index.js';
import { buildPromptsCommand, ppoConfigFromOptions } from '../src/cli/train_prompts.js';
import { resolvePpoConfig } from '../src/ppo/config.js';
import { preparePrompts, recordedTemplate } from '../src/ppo/data.js';
import { PpoTrainer } from '../src/ppo/trainer.js';
import { buildToyRewardModel, tempDir, toyConfig, writeToyPrompts } from './ppo_helpers.js';
import { fixtureDir } from './helpers/fixtures.js';

const ROOT = join(fixtureDir('gpt2'), '..', '..', '..', '..');
const AWESOME = join(ROOT, 'datasets', 'prompts', 'awesome-chatgpt-prompts.csv');

let dir: string;
let rmDir: string;
let prompts: string;
let tokenizer: Tokenizer;
beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = tempDir('cli');
  rmDir = await buildToyRewardModel(join(dir, 'rm'));
  prompts = writeToyPrompts(dir);
  tokenizer = await Tokenizer.fromDir(fixtureDir('gpt2'));
});

function parse(args: string[]) {
  const cmd = buildPromptsCommand().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  cmd.parse(args, { from: 'user' });
  return ppoConfigFromOptions(cmd.opts(), cmd.args[0]);
}
const required = ['--pretrain', 'sft', '--rm_path', 'rm', '--save_path', 'out'];

describe('flags', () => {
  it('takes the prompts file as the first argument, --prompt_dataset or the old --prompt_path', () => {
    expect(parse(['p.csv', ...required]).promptDataset).toBe('p.csv');
    expect(parse([...required, '--prompt_dataset', 'q.jsonl']).promptDataset).toBe('q.jsonl');
    expect(parse([...required, '--prompt_path', 'r.csv']).promptDataset).toBe('r.csv');
    expect(() => parse(required)).toThrow(/no prompts/);
  });

  it('maps the old timestep flags onto episodes, collect and update steps', () => {
    const old = resolvePpoConfig(parse(['p.csv', ...required, '--max_timesteps', '20', '--update_timesteps', '10', '--max_epochs', '3']));
    expect(old.numCollectSteps).toBe(10);
    expect(old.numEpisodes).toBe(20); // 10 episodes × (20 rollouts / update every 10)
    expect(old.numUpdateSteps).toBe(3);
    const mixed = resolvePpoConfig(parse(['p.csv', ...required, '--update_timesteps', '4', '--num_update_steps', '2', '--max_epochs', '9']));
    expect(mixed.numCollectSteps).toBe(4);
    expect(mixed.numUpdateSteps).toBe(2); // the new name wins
    const plain = resolvePpoConfig(parse(['p.csv', ...required]));
    expect([plain.numEpisodes, plain.numCollectSteps, plain.numUpdateSteps]).toEqual([10, 10, 5]);
  });

  it("accepts ColossalChat's algorithm switches and the documented defaults", () => {
    const c = resolvePpoConfig(parse(['p.csv', ...required, '--advantage', 'coati', '--ptx_mix', 'convex', '--ptx_coef', '0.9', '--kl_target', '6',
      '--whiten_advantages', 'false', '--lora_rank', '8', '--merge_lora_weights']));
    expect(c.advantage).toBe('coati');
    expect(c.ptxMix).toBe('convex');
    expect(c.klTarget).toBe(6);
    expect(c.whitenAdvantages).toBe(false);
    expect(c.loraRank).toBe(8);
    expect(c.mergeLoraWeights).toBe(true);
    const d = resolvePpoConfig(parse(['p.csv', ...required]));
    expect([d.clipEps, d.valueClip, d.gamma, d.lam, d.klTarget, d.advantage, d.ptxMix, d.whitenAdvantages]).toEqual([0.2, 0.2, 1, 0.95, null, 'gae', 'additive', true]);
    expect(() => parse(['p.csv', ...required, '--advantage', 'reinforce'])).toThrow(/reinforce/);
    expect(() => resolvePpoConfig(parse(['p.csv', ...required, '--max_seq_len', '64', '--max_input_len', '64']))).toThrow(/--max_seq_len.*--max_new_tokens/);
    expect(() => resolvePpoConfig(parse(['p.csv', ...required, '--ptx_mix', 'convex', '--ptx_coef', '2']))).toThrow(/--ptx_coef/);
  });
});

describe('prompt files', () => {
  it("awesome-chatgpt-prompts.csv works as is: the prompt column, rendered, long prompts shortened inside the user's text", async () => {
    const data = await preparePrompts(AWESOME, tokenizer, { template: getTemplate('alpaca'), maxInputLen: 160 });
    const rows = readFileSync(AWESOME, 'utf8').split('\n').filter((l) => l.startsWith('"')).length - 1;
    expect(data.prompts.length).toBe(rows);
    expect(data.texts[0]).toContain('### Instruction:\nImagine you are an experienced Ethereum developer');
    expect(data.texts[0]!.endsWith('### Response:')).toBe(true);
    expect(data.prompts.every((p) => p.length <= 160)).toBe(true);
    expect(data.texts.every((t) => t.startsWith('Below is an instruction') && t.endsWith('### Response:'))).toBe(true);
    expect(data.prompts[0]).toEqual(tokenizer.encode(data.texts[0]!, { addSpecialTokens: false }));
    expect(data.truncated).toBeGreaterThan(0);
    expect(data.truncatedTemplate).toBe(0);
  });

  it('a CSV row with the wrong number of fields stops the run naming the line; --skip_bad_records skips and counts it', async () => {
    const csv = join(dir, 'ragged.csv');
    writeFileSync(csv, 'act,prompt\nPoet,Write a poem\nBroken row with one field\nChef,Cook something\n');
    const savePath = join(dir, 'never');
    await expect(PpoTrainer.create({ ...toyConfig(rmDir, csv, savePath) }, { log: () => {} })).rejects.toThrow(/ragged\.csv:3: ragged row: 1 field\(s\) but the header has 2 \(act, prompt\); field "prompt" is missing/);
    expect(existsSync(savePath)).toBe(false);
    const notes: string[] = [];
    const t = await PpoTrainer.create({ ...toyConfig(rmDir, csv, savePath), skipBadRecords: true }, { log: (m) => notes.push(m) });
    t.dispose();
    expect(notes.join('\n')).toMatch(/skipped 1 bad record\(s\), e\.g\. .*ragged\.csv:3/);
    const data = await preparePrompts(csv, tokenizer, { template: getTemplate('plain'), maxInputLen: 16, skipBadRecords: true });
    expect(data.prompts).toHaveLength(2);
    expect(data.skipped).toBe(1);
    expect(existsSync(savePath)).toBe(false);
  });
});

describe('the prompt template', () => {
  it("defaults to the one the SFT directory recorded (config.json rlhf, else trainer_state args), else none", () => {
    const a = join(dir, 'sft-a');
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, 'config.json'), JSON.stringify({ model_type: 'gpt2', rlhf: { kind: 'sft', prompt_template: 'chatml' } }));
    expect(recordedTemplate(a)).toBe('chatml');
    const b = join(dir, 'sft-b');
    mkdirSync(b, { recursive: true });
    writeFileSync(join(b, 'trainer_state.json'), JSON.stringify({ args: { promptTemplate: 'human_assistant' } }));
    expect(recordedTemplate(b)).toBe('human_assistant');
    expect(recordedTemplate(fixtureDir('gpt2'))).toBeNull();
    expect(resolvePpoConfig(parse(['p.csv', ...required, '--max_datasets_size', '0'])).maxDatasetsSize).toBe(0);
  });
});

describe('errors that say what to fix', () => {
  it('lengths beyond the model, a reward model without a value head, an unavailable strategy', async () => {
    const out = join(dir, 'nothing');
    await expect(PpoTrainer.create({ ...toyConfig(rmDir, prompts, out), maxNewTokens: 60 }, { log: () => {} })).rejects.toThrow(/68 tokens but the actor has 64 positions: lower --max_seq_len/);
    await expect(PpoTrainer.create({ ...toyConfig(fixtureDir('gpt2'), prompts, out) }, { log: () => {} })).rejects.toThrow(/no value head.*--rm_path/);
    await expect(PpoTrainer.create({ ...toyConfig(rmDir, prompts, out), strategy: 'ddp' }, { log: () => {} })).rejects.toThrow(/not available yet|ddp/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('the command', () => {
  it('trains from the awesome-chatgpt-prompts CSV with --advantage coati and writes actor + critic', async () => {
    const out = join(dir, 'cli-out');
    mkdirSync(dir, { recursive: true });
    const run = promisify(execFile);
    const { stderr } = await run('npx', ['tsx', join(ROOT, 'src', 'cli', 'train_prompts.ts'), AWESOME, '--pretrain', fixtureDir('gpt2'), '--rm_path', rmDir,
      '--save_path', out, '--backend', 'cpu', '--num_episodes', '1', '--num_collect_steps', '1', '--num_update_steps', '1', '--experience_batch_size', '2',
      '--train_batch_size', '2', '--max_input_len', '24', '--max_new_tokens', '3', '--max_datasets_size', '4', '--advantage', 'coati'], { cwd: ROOT });
    expect(stderr).toMatch(/backend: cpu/);
    expect(existsSync(join(out, 'config.json'))).toBe(true);
    expect(existsSync(join(out, 'critic', 'config.json'))).toBe(true);
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    expect(state.args.promptTemplate).toBe('alpaca');
    expect(state.args.advantage).toBe('coati');
    expect(readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
  }, 300_000);
});
