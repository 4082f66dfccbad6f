/**
 * GRPO end to end on the toy task of test/ppo_helpers.ts (the gpt2 fixture, near-uniform over 600 ids): the reward
 * is a user module's share of "marked" completion ids (≡ 3 mod 10), read from `extra.completion_ids`. A few steps
 * raise it clearly; an interrupted LoRA run with a reference (β > 0), μ = 2 and clip-higher resumes to the weights of
 * a straight run; the CLIs run and fail clearly.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { GrpoTrainer } from '../src/grpo/trainer.js';
import type { GrpoConfigInput } from '../src/grpo/config.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { tempDir, writeToyPrompts } from './ppo_helpers.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';

const run = promisify(execFile);
let dir: string;
let prompts: string;
let rewardModule: string;

beforeAll(async () => {
  await initBackend('wasm', () => {});
  dir = tempDir('grpo');
  prompts = writeToyPrompts(dir);
  rewardModule = join(dir, 'marked.mjs');
  writeFileSync(rewardModule, [
    '// Share of completion tokens whose id is ≡ 3 (mod 10).',
    'export function marked(prompts, completions, extra) {',
    '  return extra.completion_ids.map((ids) => (ids.length ? ids.filter((t) => t % 10 === 3).length / ids.length : 0));',
    '}',
  ].join('\n') + '\n');
});

const toy = (savePath: string, over: Partial<GrpoConfigInput> = {}): GrpoConfigInput => ({
  pretrain: fixtureDir('gpt2'), dataset: prompts, savePath, promptTemplate: 'plain', rewardFuncs: [rewardModule],
  batchSize: 4, numGenerations: 4, maxNewTokens: 8, maxPromptLength: 8, lr: 1e-2, maxSteps: 12, sampleEvery: 6, seed: 7, ...over,
});
const weightsOf = (model: { namedParameters(): [string, tf.Variable][] }) => model.namedParameters().flatMap(([, v]) => Array.from(v.dataSync()));

describe('GRPO on the toy task', () => {
  it('12 steps raise the mean reward clearly; TRL metric names, samples with rewards, flat memory; the policy reloads', async () => {
    const savePath = join(dir, 'out');
    const tensorsAt = new Map<number, number>();
    const trainer = await GrpoTrainer.create(toy(savePath), { log: () => {}, progressBar: false, onStep: (s) => tensorsAt.set(s, tf.memory().numTensors) });
    expect(existsSync(savePath)).toBe(false); // nothing written before training starts
    const { history: h } = await trainer.train();
    expect(h).toHaveLength(12);
    const avg = (from: number, to: number) => h.slice(from, to).reduce((a, r) => a + r.reward!, 0) / (to - from);
    // about 0.1 at the start (one id in ten is marked)
    expect(avg(9, 12) - avg(0, 3)).toBeGreaterThan(0.2);
    for (const key of ['reward', 'reward_std', 'rewards/marked/mean', 'rewards/marked/std', 'frac_reward_zero_std', 'completions/mean_length',
      'completions/clipped_ratio', 'entropy', 'clip_ratio/low_mean', 'clip_ratio/high_mean', 'policy_loss', 'train/grad_norm', 'time/generate_s', 'time/new_tokens_per_s']) {
      expect(Number.isFinite(h[11]![key])).toBe(true);
    }
    expect(h[11]).not.toHaveProperty('kl'); // β 0: no reference
    expect(tensorsAt.get(12)).toBe(tensorsAt.get(2));
    const logs = join(savePath, 'logs');
    expect(readdirSync(logs).some((f) => f.startsWith('events.out.tfevents'))).toBe(true);
    const samples = readFileSync(join(logs, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string });
    expect(samples).toHaveLength(4); // steps 6 and 12, two groups each
    expect(samples[0]!.text).toMatch(/\[reward [\d.]+: marked [\d.]+; \d+ tokens\]/);
    const reloaded = loadPretrained(savePath).model;
    expect(relErr(weightsOf(reloaded), weightsOf(trainer.modelSet.policy))).toBeLessThan(1e-6);
    reloaded.dispose();
    trainer.dispose();
  });

  it('LoRA with a reference (β 0.04, adapter off), μ 2, clip-higher, rloo: Ctrl-C then --resume gives the straight run\'s weights', async () => {
    const over: Partial<GrpoConfigInput> = {
      maxSteps: 4, loraRank: 4, beta: 0.04, numIterations: 2, epsilonHigh: 0.28, advantage: 'rloo', lossType: 'bnpo', needOptimCkpt: true, sampleEvery: 0, microBatchSize: 6,
    };
    const straight = await GrpoTrainer.create(toy(join(dir, 'straight'), over), { log: () => {}, progressBar: false });
    const hs = (await straight.train()).history;
    expect(hs[3]!.kl).toBeGreaterThan(0);
    expect(straight.modelSet.reference).toBe(straight.modelSet.policy);
    const want = straight.modelSet.policy.lora!.modules;

    let stop = false;
    const flag: InterruptFlag = { get requested() { return stop; }, signal: null, dispose() {} };
    const first = await GrpoTrainer.create(toy(join(dir, 'split'), over), { log: () => {}, progressBar: false, interrupt: flag, onStep: (s) => (stop = s === 2) });
    const r1 = await first.train();
    first.dispose();
    expect(r1.interrupted).toBe(true);
    expect(r1.savedTo).toBe(join(dir, 'split', 'checkpoint-2'));
    const second = await GrpoTrainer.create(toy(join(dir, 'split'), { ...over, resume: r1.savedTo }), { log: () => {}, progressBar: false });
    expect(second.stepsDone).toBe(2);
    const r2 = await second.train();
    expect(r2.steps).toBe(4);
    for (const [mod, { A, B }] of second.modelSet.policy.lora!.modules) {
      expect(relErr(A.dataSync(), want.get(mod)!.A.dataSync())).toBeLessThan(1e-5);
      expect(relErr(B.dataSync(), want.get(mod)!.B.dataSync())).toBeLessThan(1e-5);
    }
    straight.dispose();
    second.dispose();
  });
});

describe('a reward function that fails mid-run', () => {
  it('keeps the steps done in a resumable checkpoint and says how to continue', async () => {
    const flaky = join(dir, 'flaky.mjs');
    writeFileSync(flaky, 'let calls = 0;\nexport function flaky(p, c) { if (++calls === 3) throw new Error("service down"); return c.map((s) => s.length % 2); }\n');
    const savePath = join(dir, 'flaky');
    const over: Partial<GrpoConfigInput> = { rewardFuncs: [flaky], batchSize: 2, numGenerations: 2, maxNewTokens: 4, maxSteps: 4, sampleEvery: 0 };
    const t = await GrpoTrainer.create(toy(savePath, over), { log: () => {}, progressBar: false });
    await expect(t.train()).rejects.toThrow(/service down[\s\S]*the 2 steps done are saved in .*checkpoint-2: fix the cause and add --resume/);
    t.dispose();
    const fixed = join(dir, 'fixed.mjs'); // a new file: modules are cached by path
    writeFileSync(fixed, 'export function flaky(p, c) { return c.map((s) => s.length % 2); }\n');
    const resumed = await GrpoTrainer.create(toy(savePath, { ...over, rewardFuncs: [fixed], resume: join(savePath, 'checkpoint-2') }), { log: () => {}, progressBar: false });
    expect(resumed.stepsDone).toBe(2);
    expect((await resumed.train()).steps).toBe(4);
    resumed.dispose();
  });
});

describe('every model family', () => {
  it.each(['opt', 'bloom', 'llama'] as const)('%s: a GRPO step with a reference (β 0.04) and μ 2 runs and moves the weights', async (arch) => {
    const savePath = join(dir, `family-${arch}`);
    const trainer = await GrpoTrainer.create(toy(savePath, {
      pretrain: fixtureDir(arch), batchSize: 2, numGenerations: 4, maxNewTokens: 4, maxSteps: 1, beta: 0.04, numIterations: 2, sampleEvery: 0,
    }), { log: () => {}, progressBar: false });
    const before = weightsOf(trainer.modelSet.policy);
    const [m] = (await trainer.train()).history;
    expect(Number.isFinite(m!.policy_loss)).toBe(true);
    expect(m!.kl).toBeGreaterThanOrEqual(0);
    expect(relErr(weightsOf(trainer.modelSet.policy), before)).toBeGreaterThan(0);
    trainer.dispose();
  });
});

describe('train_grpo and evaluate CLIs', () => {
  const cli = (cmd: string, args: string[]) => run('npx', ['tsx', `src/cli/${cmd}.ts`, ...args, '--backend', 'wasm'], { timeout: 120_000 });
  it('train_grpo runs REINFORCE++ with a format reward and dynamic sampling; evaluate scores the result', async () => {
    const out = join(dir, 'cli');
    await cli('train_grpo', ['--pretrain', fixtureDir('gpt2'), '--dataset', prompts, '--prompt_template', 'plain', '--reward_funcs', 'format,length', '--format_pattern', '\\d',
      '--length_target', '4', '--reward_weights', '1,0.5', '--advantage', 'reinforce_pp', '--beta', '0.01', '--filter_zero_std', '--batch_size', '2', '--num_generations', '2',
      '--max_new_tokens', '4', '--max_prompt_length', '8', '--max_steps', '1', '--save_path', out]);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    const metrics = JSON.parse(readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8').trim()) as Record<string, number>;
    expect(metrics).toHaveProperty('rewards/format/mean');
    expect(metrics).toHaveProperty('rewards/length/mean');
    const { stdout } = await cli('evaluate', ['--pretrain', out, '--dataset', 'datasets/verifiable/gsm8k-test-first200.jsonl', '--reward_funcs', 'accuracy',
      '--max_datasets_size', '3', '--max_new_tokens', '4', '--max_prompt_length', '40', '--num_samples', '2', '--output', join(dir, 'eval.jsonl')]);
    expect(stdout).toMatch(/accuracy \(pass@2\): [\d.]+ \(\d+\/3\)/);
    expect(readFileSync(join(dir, 'eval.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
  });
  it('a broken reward module stops the run with its name and the sample, and no model is written', async () => {
    const bad = join(dir, 'bad.mjs');
    writeFileSync(bad, 'export function strict(prompts, completions) { return prompts.map((p) => { if (p.includes("Why")) throw new Error("no answer tag"); return 0; }); }\n');
    const err = await cli('train_grpo', ['--pretrain', fixtureDir('gpt2'), '--dataset', prompts, '--reward_funcs', bad, '--prompt_template', 'plain', '--batch_size', '16', '--num_generations', '2',
      '--max_new_tokens', '2', '--max_prompt_length', '8', '--max_steps', '1', '--save_path', join(dir, 'bad')]).catch((e: { stderr: string; code: number }) => e);
    expect((err as { code: number }).code).not.toBe(0);
    expect((err as { stderr: string }).stderr).toMatch(/reward function "strict" threw on sample \d+ \(prompt "Why(\\n)*"\): no answer tag/);
    expect(existsSync(join(dir, 'bad', 'model.safetensors'))).toBe(false);
  });
});
