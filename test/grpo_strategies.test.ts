/**
 * GRPO under 2 MPI ranks: each rank samples its share of the prompts; ddp and zero2 (the same averaged gradients,
 * zero2 with sharded AdamW state) reach the same weights, which moved, and the zero2 checkpoint resumes in one process.
 * REINFORCE++'s whitening covers the whole batch: 2 ranks holding unequal shares give the advantages of 1 rank.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { runGrpo } from '../src/grpo/trainer.js';
import { computeAdvantages } from '../src/grpo/advantages.js';
import { reinforceBatch } from './grpo_advantages_worker.js';
import { tempDir, writeToyPrompts } from './ppo_helpers.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { mpirun, skipWithoutMpi, REPO_ROOT } from './strategies_launch.js';

const skip = skipWithoutMpi();
let dir: string;
let prompts: string;
let reward: string;
const weights = (d: string) => {
  const m = loadPretrained(d).model;
  const w = m.namedParameters().flatMap(([, v]) => Array.from(v.dataSync()));
  m.dispose();
  return w;
};
const args = (out: string, strategy: string) => [
  '--strategy', strategy, '--pretrain', fixtureDir('gpt2'), '--dataset', prompts, '--prompt_template', 'plain', '--reward_funcs', reward,
  '--batch_size', '2', '--num_generations', '4', '--max_new_tokens', '6', '--max_prompt_length', '8', '--max_steps', '2', '--lr', '1e-2',
  '--save_steps', '1', '--need_optim_ckpt', '--seed', '3', '--backend', 'wasm', '--save_path', out,
];

describe.skipIf(skip)('GRPO with 2 ranks', () => {
  beforeAll(async () => {
    await initBackend('wasm', () => {});
    dir = tempDir('grpo-mpi');
    prompts = writeToyPrompts(dir);
    reward = join(dir, 'marked.mjs');
    writeFileSync(reward, 'export function marked(p, c, e) { return e.completion_ids.map((ids) => ids.filter((t) => t % 10 === 3).length / Math.max(1, ids.length)); }\n');
  });

  it('ddp == zero2, the weights moved, and a zero2 checkpoint resumes in one process', async () => {
    const cli = join(REPO_ROOT, 'src', 'cli', 'train_grpo.ts');
    for (const s of ['ddp', 'zero2']) {
      const r = await mpirun(2, cli, args(join(dir, s), s), { timeoutMs: 300_000 });
      expect(r.output).not.toMatch(/^error:/m);
      expect(r.code).toBe(0);
    }
    const ddp = weights(join(dir, 'ddp'));
    expect(relErr(weights(join(dir, 'zero2')), ddp)).toBeLessThan(1e-5);
    expect(relErr(ddp, weights(fixtureDir('gpt2')))).toBeGreaterThan(1e-4);
    const lines = readFileSync(join(dir, 'ddp', 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
    // 2 ranks × batch 2 = global batch 4: a one-process resume takes the same data position with batch 4.
    const ckpt = join(dir, 'zero2', 'checkpoint-1');
    expect(existsSync(join(ckpt, 'optimizer.safetensors'))).toBe(true);
    const res = await runGrpo({
      pretrain: fixtureDir('gpt2'), dataset: prompts, promptTemplate: 'plain', rewardFuncs: [reward], batchSize: 4, numGenerations: 4, maxNewTokens: 6,
      maxPromptLength: 8, maxSteps: 2, lr: 1e-2, seed: 3, savePath: join(dir, 'naive'), resume: ckpt, sampleEvery: 0,
    }, { log: () => {}, progressBar: false });
    expect(res.steps).toBe(2);
    expect(res.history).toHaveLength(1);
  }, 600_000);

  it('REINFORCE++ advantages of 2 ranks (2 and 4 rows) equal those of 1 rank on the whole batch', async () => {
    const out = join(dir, 'reinforce_pp');
    mkdirSync(out, { recursive: true });
    const r = await mpirun(2, join(REPO_ROOT, 'test', 'grpo_advantages_worker.ts'), [out], { timeoutMs: 120_000 });
    expect(r.code, r.output).toBe(0);
    const x = reinforceBatch();
    const whole = computeAdvantages('reinforce_pp', { rewards: x.rewards, G: 1, oldLogps: x.oldLogps, refLogps: x.refLogps, mask: x.mask, klCoef: x.klCoef });
    const got: number[][] = new Array(whole.length);
    for (const rank of [0, 1]) {
      const part = JSON.parse(readFileSync(join(out, `rank${rank}.json`), 'utf8')) as { rows: number[]; advantages: number[][] };
      part.rows.forEach((b, i) => (got[b] = part.advantages[i]!));
    }
    expect(relErr(got.flat(), whole.flat())).toBeLessThan(1e-12);
    // per-rank whitening would differ: rank 0's two rows alone are whitened to their own mean 0
    const alone = computeAdvantages('reinforce_pp', { rewards: x.rewards.slice(0, 2), G: 1, oldLogps: x.oldLogps.slice(0, 2), refLogps: x.refLogps.slice(0, 2), mask: x.mask.slice(0, 2), klCoef: x.klCoef });
    expect(relErr(alone.flat(), whole.slice(0, 2).flat())).toBeGreaterThan(0.05);
  }, 180_000);
});
