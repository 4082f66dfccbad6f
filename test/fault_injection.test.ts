/**
 * Fault injection on every trainer (train_sft, train_reward_model, train_prompts), as real processes on the tiny
 * fixtures (--backend cpu). One chain per trainer, each link a child process resuming from the latest checkpoint:
 *   1. SIGINT while a step runs            → exit 130, a resumable checkpoint of the step;
 *   2. SIGTERM, twice, while a checkpoint is being written (RLHF_TS_SAVE_PAUSE_MS holds each save open for a moment,
 *      so the signals land inside it)       → the save completes, exit 143;
 *   3. kill -9 at seeded random moments around a checkpoint write (mid-write or just after it), in a loop;
 *   4. kill -9 inside the final save, after its journal is published.
 * After every kill, every checkpoint that was complete before it is still in place, byte for byte, and the logs too;
 * the next start repairs what the kill left, and the final model equals that of an uninterrupted run tensor by
 * tensor (≤1e-6 relative). train_dpo and train_grpo get the short chain: SIGINT mid-run → exit 130 and a resumable
 * checkpoint-N; --resume from it → the final model of an uninterrupted run (≤1e-6). NaN injection (--lr 1e10) stops
 * each trainer with the checkpoints it wrote intact, no final model in save_path, and a non-zero exit (1, naming the
 * step and the metric).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/engine/backend.js';
import { readSafetensors } from '../src/hub/safetensors.js';
import { Rng } from '../src/engine/rng.js';
import { recoverSaveDir } from '../src/trainer/final_save.js';
import { NonFiniteError } from '../src/trainer/nonfinite_guard.js';
import { trainSft } from '../src/sft/index.js';
import { runRewardTraining } from '../src/reward/index.js';
import { runPpo } from '../src/ppo/trainer.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { REPO, tempDir, writeNumbersJsonl } from './sft_helpers.js';
import { buildToyRewardModel, writeToyPrompts } from './ppo_helpers.js';

const GPT2 = fixtureDir('gpt2');
const HH = join(REPO, 'datasets', 'preference', 'hh-rlhf-harmless-base-test.jsonl.gz');
const DPO_DEMO = join(REPO, 'datasets', 'preference', 'dpo_en_demo.json');
const PAUSE_MS = 150;
const CHAIN_TIMEOUT = 300_000;
/** Random kills per trainer, at most (FAULT_KILLS=20 for a longer soak: the loop ends when one step is left). */
const RANDOM_KILLS = Number(process.env.FAULT_KILLS ?? 1);

/** A CLI run in a child process (node --import tsx, so signals reach the trainer itself, not a wrapper). */
class CliRun {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: (() => void)[] = [];

  constructor(command: string, args: string[], env: Record<string, string> = {}) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src', 'cli', `${command}.ts`), ...args], {
      cwd: REPO, env: { ...process.env, CI: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const take = (chunk: Buffer) => {
      this.output += chunk.toString();
      for (const w of this.waiters) w();
    };
    this.proc.stdout!.on('data', take);
    this.proc.stderr!.on('data', take);
    this.exited = new Promise((done) => this.proc.on('exit', (code, signal) => done({ code, signal })));
  }

  /** Resolves with the output's first match of `re` at or after `from`; rejects if the process exits first. */
  waitFor(re: RegExp, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const look = () => {
        const m = new RegExp(re.source, re.flags.replace('g', '') + 'g');
        m.lastIndex = from;
        const hit = m.exec(this.output);
        if (hit) {
          this.waiters = this.waiters.filter((w) => w !== look);
          resolve(hit);
        }
      };
      this.waiters.push(look);
      look();
      void this.exited.then(() => setImmediate(() => reject(new Error(`exited before ${re}:\n${this.output.slice(-2000)}`))));
    });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Complete checkpoints of a save_path by step. */
function checkpoints(savePath: string): number[] {
  if (!existsSync(savePath)) return [];
  return readdirSync(savePath)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(savePath, m[0], 'trainer_state.json')))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** A digest of every file under `dir` (names and bytes). */
function treeDigest(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      h.update(p.slice(dir.length));
      if (e.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

function digests(savePath: string): Map<number, string> {
  return new Map(checkpoints(savePath).map((s) => [s, treeDigest(join(savePath, `checkpoint-${s}`))]));
}

/** Every checkpoint complete before a fault is still there, unchanged. */
function expectKept(savePath: string, before: Map<number, string>): void {
  const now = digests(savePath);
  for (const [step, digest] of before) expect(now.get(step), `checkpoint-${step}`).toBe(digest);
}

/** Final-model weights of two save_paths are equal tensor by tensor (every *.safetensors but the optimizer's). */
function expectSameModel(a: string, b: string, subdirs: string[] = []): void {
  for (const sub of ['', ...subdirs]) {
    const files = readdirSync(join(a, sub)).filter((f) => f.endsWith('.safetensors') && f !== 'optimizer.safetensors');
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const ta = readSafetensors(join(a, sub, f)).tensors;
      const tb = readSafetensors(join(b, sub, f)).tensors;
      expect([...tb.keys()].sort()).toEqual([...ta.keys()].sort());
      for (const [name, t] of ta) expect(relErr(tb.get(name)!.data, t.data), `${sub}/${f}:${name}`).toBeLessThan(1e-6);
    }
  }
}

interface Chain {
  command: string;
  /** Flags of the run (without --save_path / --resume). */
  args: string[];
  /** Printed once training runs (the signal handlers are in place): a progress line of the first step. */
  ready: RegExp;
  /** Optimizer steps (PPO: episodes) of the whole run. */
  steps: number;
  /** Model subdirectories to compare besides the top level. */
  subdirs?: string[];
  seed: number;
}

/** Runs one trainer's chain of faults (module comment) and compares the end with an uninterrupted run. */
async function faultChain(c: Chain): Promise<void> {
  const work = tempDir(`fault-${c.command}`);
  const straight = join(work, 'straight');
  const ref = new CliRun(c.command, [...c.args, '--save_path', straight]);
  expect((await ref.exited).code, ref.output).toBe(0);

  const savePath = join(work, 'run');
  const run = (resume: boolean, env: Record<string, string> = {}) => {
    const latest = checkpoints(savePath).at(-1);
    const extra = resume ? ['--resume', join(savePath, `checkpoint-${latest}`)] : [];
    return new CliRun(c.command, [...c.args, '--save_path', savePath, '--save_steps', '1', '--need_optim_ckpt', ...extra], env);
  };
  const paused = { RLHF_TS_SAVE_PAUSE_MS: String(PAUSE_MS) };

  // 1. SIGINT mid-step: exit 130 after writing a resumable checkpoint
  const a = run(false);
  await a.waitFor(c.ready);
  a.proc.kill('SIGINT');
  expect((await a.exited).code, a.output).toBe(130);
  expect(a.output).toMatch(/interrupted.*saved .*checkpoint-\d+/);
  expect(checkpoints(savePath).length).toBeGreaterThan(0);

  // 2. SIGTERM (twice) inside a checkpoint write: it completes, then exit 143
  let before = digests(savePath);
  const b = run(true, paused);
  const hit = await b.waitFor(/save paused \d+ ms \(written, not yet published\): (\S*checkpoint-(\d+))/);
  b.proc.kill('SIGTERM');
  await sleep(PAUSE_MS / 3);
  b.proc.kill('SIGTERM'); // a second signal must not cut the save short
  expect((await b.exited).code, b.output).toBe(143);
  expect(b.output).toMatch(/SIGTERM again: still saving the checkpoint/);
  expect(checkpoints(savePath)).toContain(Number(hit[2]));
  expect(existsSync(join(hit[1]!, 'optimizer.safetensors'))).toBe(true);
  expectKept(savePath, before);

  // 3. kill -9 at seeded random moments around a checkpoint write
  const rng = new Rng(c.seed);
  for (let i = 0; i < RANDOM_KILLS && checkpoints(savePath).at(-1)! < c.steps - 1; i++) {
    before = digests(savePath);
    const k = run(true, paused);
    await k.waitFor(/save paused \d+ ms \(written, not yet published\): \S*checkpoint-/);
    await sleep(rng.next() * 2 * PAUSE_MS); // < PAUSE_MS: mid-write; after: the next step
    k.proc.kill('SIGKILL');
    expect((await k.exited).signal).toBe('SIGKILL');
    expectKept(savePath, before);
  }

  // 4. kill -9 inside the final save, after its journal is published; the next start completes it
  before = digests(savePath);
  const f = run(true, paused);
  await f.waitFor(/save paused \d+ ms \(journal published, entries not yet moved\)/);
  f.proc.kill('SIGKILL');
  await f.exited;
  expectKept(savePath, before);
  expect(existsSync(join(savePath, 'logs', 'metrics.jsonl'))).toBe(true);
  const notes = await recoverSaveDir(savePath); // what the next start runs first
  expect(notes.join('\n')).toMatch(/completed a final save/);
  expectKept(savePath, before);
  expectSameModel(straight, savePath, c.subdirs);
  expect(readdirSync(savePath).filter((n) => n.startsWith('.'))).toEqual([]);
}

/**
 * The short chain: an uninterrupted run beside one stopped by SIGINT after `ready` (exit 130, a checkpoint with its
 * optimizer state), then --resume from that checkpoint; the two final models are equal.
 */
async function interruptChain(c: Pick<Chain, 'command' | 'args' | 'ready' | 'steps'>): Promise<void> {
  const work = tempDir(`sigint-${c.command}`);
  const straight = join(work, 'straight');
  const savePath = join(work, 'run');
  const ref = new CliRun(c.command, [...c.args, '--save_path', straight]);
  const a = new CliRun(c.command, [...c.args, '--save_path', savePath]);
  await a.waitFor(c.ready);
  a.proc.kill('SIGINT');
  expect((await a.exited).code, a.output).toBe(130);
  const hit = /interrupted.*saved (\S*checkpoint-(\d+))/.exec(a.output);
  expect(hit, a.output).not.toBeNull();
  expect(Number(hit![2])).toBeLessThan(c.steps);
  for (const f of ['trainer_state.json', 'optimizer.safetensors']) expect(existsSync(join(hit![1]!, f))).toBe(true);
  expect(existsSync(join(savePath, 'model.safetensors'))).toBe(false);
  expect((await ref.exited).code, ref.output).toBe(0);
  const b = new CliRun(c.command, [...c.args, '--save_path', savePath, '--resume', hit![1]!]);
  expect((await b.exited).code, b.output).toBe(0);
  expectSameModel(straight, savePath);
}

describe('fault injection: real signals and kill -9 on every trainer', () => {
  it('train_sft', async () => {
    const work = tempDir('fault-sft-data');
    // 12 short samples, batches of 2: 6 steps
    await faultChain({
      command: 'train_sft', steps: 6, seed: 11, ready: /sft step 1\//,
      args: ['--pretrain', GPT2, '--dataset', writeNumbersJsonl(work, 12), '--max_len', '24', '--prompt_template', 'plain',
        '--batch_size', '2', '--max_epochs', '1', '--lr', '2e-3', '--warmup_ratio', '0', '--backend', 'cpu', '--seed', '3',
        '--cache_dir', join(work, 'cache')],
    });
  }, CHAIN_TIMEOUT);

  it('train_reward_model', async () => {
    // 11 train pairs, batches of 2: 6 steps
    await faultChain({
      command: 'train_reward_model', steps: 6, seed: 12, ready: /rm epoch 1\/1 step 1\//,
      args: ['--pretrain', GPT2, '--dataset', HH, '--max_datasets_size', '12', '--max_len', '24', '--batch_size', '2',
        '--max_epochs', '1', '--lr', '1e-3', '--warmup_ratio', '0', '--log_steps', '1', '--backend', 'cpu', '--seed', '3'],
    });
  }, CHAIN_TIMEOUT);

  it('train_prompts', async () => {
    const work = tempDir('fault-ppo-data');
    const rm = await buildToyRewardModel(join(work, 'rm'));
    await faultChain({
      command: 'train_prompts', steps: 5, seed: 13, ready: /episode 1\/5/, subdirs: ['critic'],
      args: [writeToyPrompts(work, 8), '--pretrain', GPT2, '--rm_path', rm, '--prompt_template', 'plain', '--max_input_len', '8',
        '--max_new_tokens', '6', '--experience_batch_size', '4', '--num_collect_steps', '1', '--num_update_steps', '1',
        '--train_batch_size', '4', '--num_episodes', '5', '--lr', '3e-4', '--critic_lr', '1e-3', '--backend', 'cpu', '--seed', '7'],
    });
  }, CHAIN_TIMEOUT);
});

describe('SIGINT and --resume: train_dpo and train_grpo', () => {
  it('train_dpo', async () => {
    // 16 pairs, batches of 2: 8 steps
    await interruptChain({
      command: 'train_dpo', steps: 8, ready: /sigmoid epoch 1\/1 step 1\//,
      args: ['--pretrain', GPT2, '--dataset', DPO_DEMO, '--max_datasets_size', '16', '--eval_ratio', '0', '--max_len', '32', '--batch_size', '2',
        '--lr', '1e-3', '--warmup_ratio', '0', '--logging_steps', '1', '--backend', 'cpu', '--seed', '3'],
    });
  }, CHAIN_TIMEOUT);

  it('train_grpo', async () => {
    const work = tempDir('sigint-grpo-data');
    await interruptChain({
      command: 'train_grpo', steps: 8, ready: /step 1\/8: reward/,
      args: ['--pretrain', GPT2, '--dataset', writeToyPrompts(work, 8), '--prompt_template', 'plain', '--reward_funcs', 'length', '--length_target', '3',
        '--batch_size', '2', '--num_generations', '2', '--max_new_tokens', '6', '--max_prompt_length', '8', '--max_steps', '8', '--beta', '0.04',
        '--num_iterations', '2', '--lr', '1e-2', '--sample_every', '0', '--backend', 'cpu', '--seed', '3'],
    });
  }, CHAIN_TIMEOUT);
});

describe('NaN injection (--lr 1e10): the run stops, its checkpoints intact, save_path without a final model', () => {
  beforeAll(async () => {
    await initBackend('cpu', () => {});
  });

  /** The checkpoints the failed run wrote are whole, and save_path got no final model. */
  function expectStoppedClean(savePath: string): void {
    const steps = checkpoints(savePath);
    expect(steps.length).toBeGreaterThan(0);
    for (const s of steps) {
      for (const f of ['trainer_state.json', 'optimizer.safetensors']) expect(existsSync(join(savePath, `checkpoint-${s}`, f))).toBe(true);
    }
    expect(readdirSync(savePath).filter((n) => !n.startsWith('checkpoint-') && n !== 'logs')).toEqual([]);
  }

  it('train_sft (in process, and the CLI exits non-zero)', async () => {
    const work = tempDir('nan-sft');
    const data = writeNumbersJsonl(work, 10);
    const savePath = join(work, 'out');
    const config = {
      pretrain: GPT2, dataset: [data], savePath, cacheDir: join(work, 'cache'), maxLen: 24, promptTemplate: 'plain', batchSize: 2,
      maxEpochs: 1, lr: 1e10, warmupRatio: 0, backend: 'cpu' as const, saveSteps: 1, needOptimCkpt: true,
    };
    const err = await trainSft(config, { log: () => {}, progress: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as Error).message).toMatch(/^step \d+: train\/(loss|grad_norm) is .*was not written/);
    expectStoppedClean(savePath);

    const cli = new CliRun('train_sft', ['--pretrain', GPT2, '--dataset', data, '--max_len', '24', '--prompt_template', 'plain',
      '--batch_size', '2', '--lr', '1e10', '--warmup_ratio', '0', '--backend', 'cpu', '--save_path', join(work, 'cli'), '--cache_dir', join(work, 'cache')]);
    expect((await cli.exited).code).toBe(1);
    expect(cli.output).toMatch(/error: step \d+: train\/(loss|grad_norm) is/);
    expect(existsSync(join(work, 'cli', 'model.safetensors'))).toBe(false);
  }, CHAIN_TIMEOUT);

  it('train_reward_model', async () => {
    const savePath = join(tempDir('nan-rm'), 'out');
    const err = await runRewardTraining({
      pretrain: GPT2, dataset: HH, maxDatasetsSize: 12, maxLen: 24, batchSize: 2, maxEpochs: 1, lr: 1e10, warmupRatio: 0,
      backend: 'cpu', savePath, saveSteps: 1, needOptimCkpt: true,
    }, { log: () => {}, progress: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expectStoppedClean(savePath);
  }, CHAIN_TIMEOUT);

  it('train_prompts', async () => {
    const work = tempDir('nan-ppo');
    const rm = await buildToyRewardModel(join(work, 'rm'));
    const savePath = join(work, 'out');
    const err = await runPpo({
      pretrain: GPT2, rmPath: rm, promptDataset: writeToyPrompts(work, 8), savePath, promptTemplate: 'plain', maxInputLen: 8,
      maxNewTokens: 6, experienceBatchSize: 4, numCollectSteps: 1, numUpdateSteps: 1, trainBatchSize: 4, numEpisodes: 5,
      lr: 1e10, criticLr: 1e10, seed: 7, saveSteps: 1, needOptimCkpt: true,
    }, { log: () => {}, progressBar: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as Error).message).toMatch(/^episode \d+: /);
    if (checkpoints(savePath).length) expectStoppedClean(savePath);
    expect(existsSync(join(savePath, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(savePath, 'adapter_model.safetensors'))).toBe(false);
  }, CHAIN_TIMEOUT);

  it('train_dpo and train_grpo CLIs exit 1 naming the step and the metric, writing no model', async () => {
    const work = tempDir('nan-cli');
    // rewards that differ within a group, so that there is a gradient to blow up
    const reward = join(work, 'marked.mjs');
    writeFileSync(reward, 'export function marked(p, c, e) { return e.completion_ids.map((ids) => ids.filter((t) => t % 10 === 3).length / Math.max(1, ids.length)); }\n');
    const runs = [
      new CliRun('train_dpo', ['--pretrain', GPT2, '--dataset', DPO_DEMO, '--max_datasets_size', '8', '--eval_ratio', '0', '--max_len', '32', '--batch_size', '2',
        '--lr', '1e10', '--warmup_ratio', '0', '--save_steps', '1', '--need_optim_ckpt', '--backend', 'cpu', '--save_path', join(work, 'dpo')]),
      new CliRun('train_grpo', ['--pretrain', GPT2, '--dataset', writeToyPrompts(work, 8), '--prompt_template', 'plain', '--reward_funcs', reward, '--batch_size', '4',
        '--num_generations', '4', '--max_new_tokens', '4', '--max_prompt_length', '8', '--max_steps', '6', '--lr', '1e10', '--save_steps', '1', '--need_optim_ckpt',
        '--backend', 'cpu', '--save_path', join(work, 'grpo')]),
    ];
    for (const [r, name] of [[runs[0]!, 'dpo'], [runs[1]!, 'grpo']] as const) {
      expect((await r.exited).code, r.output).toBe(1);
      const m = /error: step (\d+): (\S+) is (NaN|-?Infinity)/.exec(r.output);
      expect(m, r.output).not.toBeNull();
      const savePath = join(work, name);
      expect(checkpoints(savePath).every((s) => s < Number(m![1]))).toBe(true);
      expect(existsSync(join(savePath, 'model.safetensors'))).toBe(false);
    }
  }, CHAIN_TIMEOUT);
});
