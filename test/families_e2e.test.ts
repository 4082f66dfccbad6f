/**
 * Every stage on every newer family, in process on the fixtures (the stages read nothing family-specific beyond the
 * model directory, and each stage's CLI has its own tests): SFT (full weights) → reward model (LoRA on the family's
 * default targets) → PPO (LoRA actor, the reward model as critic), each for a few steps on the cpu backend, with
 * finite losses and directories that reload as the same family. Then the three commands chained on Gemma 2 (the
 * family with the most traits).
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { trainSft } from '../src/sft/index.js';
import { runRewardTraining } from '../src/reward/index.js';
import { runPpo } from '../src/ppo/trainer.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { DEFAULT_LORA_TARGETS } from '../src/models/lora.js';
import { fixtureDir } from './helpers/fixtures.js';
import { ALPACA_EN } from './sft_helpers.js';

const FAMILIES = ['qwen2', 'qwen3', 'mistral', 'gpt_neox', 'llama3', 'phi3', 'gemma2'] as const;
const HH = 'datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz';
const quiet = { log: () => {}, progress: false } as const;

describe.each(FAMILIES)('%s: SFT → reward model (LoRA) → PPO (LoRA)', (arch) => {
  it('runs every stage and reloads each output', async () => {
    const work = mkdtempSync(join(tmpdir(), `families-${arch}-`));
    const expectedType = JSON.parse(readFileSync(join(fixtureDir(arch), 'config.json'), 'utf8')).model_type as string;

    const sft = await trainSft({
      pretrain: fixtureDir(arch), dataset: [ALPACA_EN], maxDatasetsSize: 4, savePath: join(work, 'sft'), cacheDir: join(work, 'cache'),
      maxLen: 32, promptTemplate: 'plain', batchSize: 2, maxEpochs: 1, lr: 1e-3, warmupRatio: 0, backend: 'cpu',
    }, quiet);
    expect(sft.steps).toBe(2);
    expect(Number.isFinite(sft.lastLoss)).toBe(true);

    const rm = await runRewardTraining({
      pretrain: sft.outputDir, dataset: HH, maxDatasetsSize: 4, maxLen: 32, batchSize: 2, maxEpochs: 1, lr: 1e-3, warmupRatio: 0,
      savePath: join(work, 'rm'), backend: 'cpu', loraRank: 4, evalRatio: 0, seed: 1,
    }, quiet);
    expect(rm.steps).toBe(2);
    expect(rm.epochs.every((e) => Number.isFinite(e.train['train/loss']))).toBe(true);

    const prompts = join(work, 'prompts.jsonl');
    writeFileSync(prompts, ['Hello', 'Tell me', 'Why', 'Write'].map((prompt) => JSON.stringify({ prompt })).join('\n') + '\n');
    const ppo = await runPpo({
      pretrain: sft.outputDir, rmPath: rm.outputDir, promptDataset: prompts, savePath: join(work, 'ppo'), promptTemplate: 'plain',
      maxInputLen: 8, maxNewTokens: 4, experienceBatchSize: 2, numCollectSteps: 1, numUpdateSteps: 1, trainBatchSize: 2,
      numEpisodes: 1, loraRank: 4, seed: 3, backend: 'cpu',
    }, { log: () => {} });
    expect(ppo.episodes).toBe(1);
    const m = ppo.history.at(-1)!;
    for (const k of ['loss/policy', 'loss/value']) expect(Number.isFinite(m[k]), k).toBe(true);

    for (const dir of [sft.outputDir, rm.outputDir, ppo.savedTo]) {
      expect(existsSync(dir), dir).toBe(true);
      const { model } = loadPretrained(dir);
      expect(model.config.modelType).toBe(expectedType);
      model.dispose();
    }
    const adapter = JSON.parse(readFileSync(join(ppo.savedTo, 'adapter_config.json'), 'utf8')) as { target_modules: string[] };
    expect(adapter.target_modules).toEqual(DEFAULT_LORA_TARGETS[expectedType as keyof typeof DEFAULT_LORA_TARGETS]);
  }, 120_000);
});

describe('the commands on gemma2', () => {
  it('train_sft → train_reward_model --lora_rank → train_prompts --lora_rank', async () => {
    const work = mkdtempSync(join(tmpdir(), 'families-cli-'));
    const tsx = resolve('node_modules/.bin/tsx');
    const run = (cmd: string, args: string[]) => promisify(execFile)(tsx, [`src/cli/${cmd}.ts`, ...args, '--backend', 'cpu'], { env: { ...process.env, CI: 'true' }, maxBuffer: 1 << 24 });
    const prompts = join(work, 'prompts.jsonl');
    writeFileSync(prompts, ['Hello', 'Tell me', 'Why', 'Write'].map((prompt) => JSON.stringify({ prompt })).join('\n') + '\n');
    await run('train_sft', ['--pretrain', fixtureDir('gemma2'), '--dataset', ALPACA_EN, '--max_datasets_size', '4', '--max_len', '32',
      '--prompt_template', 'plain', '--batch_size', '2', '--max_epochs', '1', '--save_path', join(work, 'sft')]);
    await run('train_reward_model', ['--pretrain', join(work, 'sft'), '--dataset', HH, '--max_datasets_size', '4', '--max_len', '32',
      '--batch_size', '2', '--max_epochs', '1', '--lora_rank', '4', '--save_path', join(work, 'rm')]);
    const { stderr } = await run('train_prompts', [prompts, '--pretrain', join(work, 'sft'), '--rm_path', join(work, 'rm'), '--save_path', join(work, 'ppo'),
      '--prompt_template', 'plain', '--num_episodes', '1', '--num_collect_steps', '1', '--num_update_steps', '1', '--experience_batch_size', '2',
      '--train_batch_size', '2', '--max_input_len', '8', '--max_new_tokens', '4', '--lora_rank', '4']);
    expect(stderr).toMatch(/backend: cpu/);
    const metrics = readFileSync(join(work, 'ppo', 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(metrics).toHaveLength(1);
    expect(Number.isFinite(metrics[0]!['loss/policy'])).toBe(true);
    const { model } = loadPretrained(join(work, 'ppo'));
    expect(model.config.modelType).toBe('gemma2');
    model.dispose();
  }, 300_000);
});
