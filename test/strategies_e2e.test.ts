// The stage trainers on 2 MPI ranks: SFT and the reward model with ddp for 5 steps give the weights of one process
// with the doubled batch (1e-5 relative), zero2 gives ddp's, and reward-model checkpoints with optimizer state move
// between a 2-rank zero2 run and a naive run in both directions (--resume across world sizes).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/hub/safetensors.js';
import { readOptimizerState } from '../src/trainer/stage_checkpoint.js';
import type { SftConfigInput } from '../src/sft/index.js';
import type { RewardConfigInput } from '../src/reward/index.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { mpirun, REPO_ROOT, skipWithoutMpi, WORKER } from './strategies_launch.js';
import { runStage, type StageJob } from './strategies_worker.js';

const skip = skipWithoutMpi();
const DPO = join(REPO_ROOT, 'datasets', 'preference', 'dpo_en_demo.json');

/** Every tensor of a saved model directory, flattened in name order (model weights and the value head if any). */
function savedWeights(dir: string): number[] {
  const out: number[] = [];
  for (const file of ['model.safetensors', 'value_head.safetensors']) {
    if (!existsSync(join(dir, file))) continue;
    const { tensors } = readSafetensors(join(dir, file));
    for (const name of [...tensors.keys()].sort()) out.push(...(tensors.get(name)!.data as Float32Array));
  }
  return out;
}

describe.skipIf(skip)('stage trainers on 2 MPI ranks', () => {
  let dir = '';
  let launch = { code: null as number | null, output: '', seconds: 0 };
  const out = (name: string) => join(dir, name);
  let sftConfig: (name: string, strategy: string, batchSize: number) => SftConfigInput;
  let rmConfig: (name: string, strategy: string, batchSize: number, extra?: Partial<RewardConfigInput>) => RewardConfigInput;
  let naiveResumed = { steps: 0 };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rlhf-e2e-'));
    // 4 chat samples with one shared answer: every rank's share has the same number of label tokens, so the mean of
    // the ranks' mean losses is the doubled batch's mean loss.
    const sftData = join(dir, 'sft.jsonl');
    const prompts = ['Name a colour.', 'Say something kind to a friend today.', 'What is two plus two?', 'Greet me.'];
    writeFileSync(sftData, prompts.map((p) => JSON.stringify({ instruction: p, input: '', output: 'I am glad to help.' })).join('\n') + '\n');
    sftConfig = (name, strategy, batchSize) => ({
      pretrain: fixtureDir('gpt2'), dataset: [sftData], savePath: out(name), cacheDir: join(dir, 'cache'), maxLen: 48,
      promptTemplate: 'plain', batchSize, maxEpochs: 5, lr: 2e-3, warmupRatio: 0, evalRatio: 0, backend: 'cpu', strategy: strategy as 'naive',
    });
    rmConfig = (name, strategy, batchSize, extra = {}) => ({
      pretrain: fixtureDir('gpt2'), dataset: DPO, maxDatasetsSize: 4, evalRatio: 0, maxLen: 48, savePath: out(name), batchSize,
      maxEpochs: 5, lr: 1e-3, warmupRatio: 0, backend: 'cpu', strategy, ...extra,
    });
    // A naive reward-model checkpoint with optimizer state at step 3, for zero2 to resume (global batch 4 both ways).
    await runStage({ stage: 'reward', config: rmConfig('rm-naive-ckpt', 'naive', 4, { saveSteps: 3, needOptimCkpt: true }) });

    const jobs: StageJob[] = [
      { name: 'sft-ddp', stage: 'sft', config: sftConfig('sft-ddp', 'ddp', 2) },
      { name: 'sft-zero2', stage: 'sft', config: sftConfig('sft-zero2', 'zero2', 2) },
      { name: 'rm-ddp', stage: 'reward', config: rmConfig('rm-ddp', 'ddp', 2) },
      { name: 'rm-zero2-ckpt', stage: 'reward', config: rmConfig('rm-zero2-ckpt', 'zero2', 2, { saveSteps: 3, needOptimCkpt: true }) },
      {
        name: 'rm-zero2-from-naive', stage: 'reward',
        config: rmConfig('rm-zero2-from-naive', 'zero2', 2, { resume: join(out('rm-naive-ckpt'), 'checkpoint-3') }),
      },
    ];
    launch = await mpirun(2, WORKER, [dir, JSON.stringify(jobs)], { timeoutMs: 400_000 });
    console.log(`2-rank launch: ${launch.seconds.toFixed(1)} s`);
    if (launch.code !== 0) return;
    await runStage({ stage: 'sft', config: sftConfig('sft-naive', 'naive', 4) });
    await runStage({ stage: 'reward', config: rmConfig('rm-naive', 'naive', 4) });
    naiveResumed = await runStage({
      stage: 'reward', config: rmConfig('rm-naive-from-zero2', 'naive', 4, { resume: join(out('rm-zero2-ckpt'), 'checkpoint-3') }),
    });
  }, 900_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the 2-rank launch succeeds', () => {
    expect(launch.output).not.toMatch(/^error:/m);
    expect(launch.code).toBe(0);
  });

  it('SFT: 2-rank ddp for 5 steps == naive with the doubled batch, and zero2 == ddp', () => {
    const naive = savedWeights(out('sft-naive'));
    const ddp = savedWeights(out('sft-ddp'));
    expect(naive.length).toBeGreaterThan(0);
    expect(relErr(ddp, naive)).toBeLessThan(1e-5);
    expect(relErr(savedWeights(out('sft-zero2')), ddp)).toBeLessThan(1e-5);
    // Training moved the weights (a no-op run would also agree).
    expect(relErr(naive, savedWeights(fixtureDir('gpt2')))).toBeGreaterThan(1e-3);
    const steps = JSON.parse(readFileSync(join(out('sft-ddp'), 'rank1.json'), 'utf8')) as { steps: number };
    expect(steps.steps).toBe(5);
  });

  it('reward model: 2-rank ddp for 5 steps == naive with the doubled batch, and zero2 == ddp', () => {
    const naive = savedWeights(out('rm-naive'));
    const ddp = savedWeights(out('rm-ddp'));
    expect(relErr(ddp, naive)).toBeLessThan(1e-5);
    // (This run also wrote a checkpoint at step 3, which does not change its training.)
    expect(relErr(savedWeights(out('rm-zero2-ckpt')), ddp)).toBeLessThan(1e-5);
  });

  it('a 2-rank zero2 checkpoint holds the full optimizer state and resumes in naive, and the other way round', () => {
    const zeroCkpt = join(out('rm-zero2-ckpt'), 'checkpoint-3');
    const naiveCkpt = join(out('rm-naive-ckpt'), 'checkpoint-3');
    const z = readOptimizerState(zeroCkpt, 'reward_model')!;
    const n = readOptimizerState(naiveCkpt, 'reward_model')!;
    expect(z.globalStep).toBe(3);
    // Gathered: the same tensors, with the same shapes, as a one-process optimizer writes.
    expect([...z.state.tensors.keys()].sort()).toEqual([...n.state.tensors.keys()].sort());
    for (const [k, t] of n.state.tensors) expect(z.state.tensors.get(k)!.shape).toEqual(t.shape);
    // Both resumed runs (same global batch: 2 per rank × 2 ranks = 4) went on from step 3 to the end of the schedule
    // and ended exactly where an uninterrupted naive run with batch 4 ends.
    expect(naiveResumed.steps).toBeGreaterThan(3);
    const resumedOnRanks = JSON.parse(readFileSync(join(out('rm-zero2-from-naive'), 'rank0.json'), 'utf8')) as { steps: number };
    expect(resumedOnRanks.steps).toBeGreaterThan(3);
    const straight = savedWeights(out('rm-naive'));
    expect(relErr(savedWeights(out('rm-naive-from-zero2')), straight)).toBeLessThan(1e-5);
    expect(relErr(savedWeights(out('rm-zero2-from-naive')), straight)).toBeLessThan(1e-5);
  });
});
