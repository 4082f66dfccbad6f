// ddp and zero2 on 2 MPI ranks (one mpirun launch running every job in turn) against one process with the doubled
// batch: the collectives themselves, weights after 5 steps (1e-5 relative), equal weights on every rank, zero2 == ddp,
// zero2's halved optimizer state, LoRA, and checkpoints moving between zero2 and naive in both directions.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { naiveStrategy } from '../src/strategies/strategy.js';
import { saveCheckpoint } from '../src/trainer/stage_checkpoint.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { mpirun, skipWithoutMpi, WORKER } from './strategies_launch.js';
import { loadModel, makeOptimization, resumeOptimizer, runSteps, weightsOf, type Job, type TrainOptions } from './strategies_worker.js';

const skip = skipWithoutMpi();
const RANKS = 2;

const base: TrainOptions = {
  modelDir: fixtureDir('gpt2'), steps: 5, batchPerRank: 2, accumulationSteps: 1, seqLen: 8, lr: 1e-3, gradClip: 1, weightDecay: 0.01,
};
/** Accumulation over 2 micro-batches with clipping active (the fixture's gradient norm is far above 0.05). */
const accum: TrainOptions = { ...base, steps: 3, accumulationSteps: 2, gradClip: 0.05 };
const lora: TrainOptions = { ...base, steps: 3, loraRank: 4, lr: 1e-2 };

type Weights = Record<string, number[]>;
interface RankResult { rank: number; losses: number[]; checksum: number; localStateSize: number; globalStep: number }

/** The one-process reference: `batchPerRank x RANKS` rows per micro-batch. */
function naiveRun(o: TrainOptions, extra: { resumeFrom?: string; saveTo?: string } = {}): Promise<{ weights: Weights; losses: number[] }> {
  const strategy = naiveStrategy();
  const one = { ...o, batchPerRank: o.batchPerRank * RANKS };
  const model = loadModel(one);
  const opt = makeOptimization(model, strategy, one);
  if (extra.resumeFrom) resumeOptimizer(extra.resumeFrom, opt);
  const { losses } = runSteps(model, opt, strategy, one);
  const done = async () => {
    if (extra.saveTo) {
      const tokenizer = await Tokenizer.fromDir(o.modelDir);
      await saveCheckpoint(extra.saveTo, { model, tokenizer, optimizers: { model: opt } });
    }
    const weights = weightsOf(model);
    opt.dispose();
    model.dispose();
    return { weights, losses };
  };
  return done();
}

function flat(w: Weights): number[] {
  return Object.keys(w).sort().flatMap((k) => w[k]!);
}

describe.skipIf(skip)(`strategies on ${RANKS} MPI ranks`, () => {
  let dir = '';
  let launch = { code: null as number | null, output: '', seconds: 0 };
  const naive: Record<string, { weights: Weights; losses: number[] }> = {};

  const ranks = (job: string): RankResult[] =>
    Array.from({ length: RANKS }, (_, r) => JSON.parse(readFileSync(join(dir, job, `rank${r}.json`), 'utf8')) as RankResult);
  const weights = (job: string): Weights => JSON.parse(readFileSync(join(dir, job, 'weights.json'), 'utf8')) as Weights;

  beforeAll(async () => {
    await tf.setBackend('cpu');
    dir = mkdtempSync(join(tmpdir(), 'rlhf-strategies-'));
    const ckptNaive = join(dir, 'ckpt-naive');
    const ckptZero2 = join(dir, 'ckpt-zero2');
    // A naive checkpoint after 3 steps, for zero2 to resume from.
    await naiveRun({ ...base, steps: 3 }, { saveTo: ckptNaive });
    const jobs: Job[] = [
      { name: 'collectives', strategy: 'collectives', ...base },
      { name: 'ddp', strategy: 'ddp', ...base },
      { name: 'zero2', strategy: 'zero2', ...base },
      { name: 'ddp-accum', strategy: 'ddp', ...accum },
      { name: 'zero2-accum', strategy: 'zero2', ...accum },
      { name: 'ddp-lora', strategy: 'ddp', ...lora },
      { name: 'zero2-lora', strategy: 'zero2', ...lora },
      { name: 'zero2-save', strategy: 'zero2', ...base, steps: 3, saveTo: ckptZero2 },
      { name: 'zero2-from-naive', strategy: 'zero2', ...base, modelDir: ckptNaive, resumeFrom: ckptNaive, steps: 2, startStep: 3 },
    ];
    launch = await mpirun(RANKS, WORKER, [dir, JSON.stringify(jobs)], { timeoutMs: 300_000 });
    if (launch.code !== 0) return;
    naive.base = await naiveRun(base);
    naive.accum = await naiveRun(accum);
    naive.lora = await naiveRun(lora);
    naive.fromZero2 = await naiveRun({ ...base, modelDir: ckptZero2, steps: 2, startStep: 3 }, { resumeFrom: ckptZero2 });
  }, 600_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the launch succeeds', () => {
    expect(launch.output).not.toMatch(/^error:/m);
    expect(launch.code).toBe(0);
  });

  it('allreduce, reduce_scatter, allgather and broadcast give the expected values on every rank', () => {
    const [r0, r1] = ranks('collectives') as unknown as Record<string, number[]>[];
    for (const r of [r0!, r1!]) {
      expect(r.allreduce).toEqual([3, 30, -1]);
      expect(r.max).toEqual([1, 0]);
      expect(r.allgather).toEqual([1, 2, 3, 4, 5]);
      expect(r.broadcast).toEqual([42, 1]);
    }
    // Rank r sends i + 10r; the sum is 2i + 10, split [3, 2].
    expect(r0!.reduceScatter).toEqual([10, 12, 14]);
    expect(r1!.reduceScatter).toEqual([16, 18]);
  });

  it('ddp averages gradients and metrics, ORs flags, and shards batches evenly', () => {
    const rs = ranks('collectives') as unknown as { meanGrad: number[]; metrics: Record<string, Record<string, number>>; any: boolean[]; shard: number[] }[];
    for (const r of rs) {
      // Gradients [r, 2r+1] on ranks 0 and 1 average to [0.5, 2] (a sum would be invisible to Adam: check it here).
      expect(r.meanGrad).toEqual([0.5, 2]);
      expect(r.metrics).toEqual({ mean: { 'train/x': 1.5 }, sum: { 'train/x': 3 }, max: { 'train/x': 2 } });
      expect(r.any).toEqual([true, false]);
    }
    expect(rs[0]!.shard).toEqual([10, 12]);
    expect(rs[1]!.shard).toEqual([11, 10]);
  });

  it('ddp for 5 steps == naive with the doubled batch (1e-5 relative), with the same weights on every rank', () => {
    const err = relErr(flat(weights('ddp')), flat(naive.base!.weights));
    expect(err).toBeLessThan(1e-5);
    const [r0, r1] = ranks('ddp');
    expect(r0!.checksum).toBe(r1!.checksum);
    expect(r0!.globalStep).toBe(5);
    // The logged loss is the mean over ranks, i.e. the doubled batch's loss.
    r0!.losses.forEach((l, i) => expect(l).toBeCloseTo(naive.base!.losses[i]!, 4));
  });

  it('zero2 == ddp == naive, and each rank holds half of the optimizer state', () => {
    expect(relErr(flat(weights('zero2')), flat(weights('ddp')))).toBeLessThan(1e-5);
    expect(relErr(flat(weights('zero2')), flat(naive.base!.weights))).toBeLessThan(1e-5);
    const z = ranks('zero2');
    const d = ranks('ddp');
    expect(z[0]!.checksum).toBe(z[1]!.checksum);
    const full = d[0]!.localStateSize;
    expect(full).toBeGreaterThan(0);
    expect(z[0]!.localStateSize + z[1]!.localStateSize).toBe(full);
    for (const r of z) expect(Math.abs(r.localStateSize - full / 2)).toBeLessThanOrEqual(2);
  });

  it('accumulation with clipping: ddp and zero2 == naive', () => {
    expect(relErr(flat(weights('ddp-accum')), flat(naive.accum!.weights))).toBeLessThan(1e-5);
    expect(relErr(flat(weights('zero2-accum')), flat(naive.accum!.weights))).toBeLessThan(1e-5);
  });

  it('LoRA: only the adapters train and are communicated; ddp and zero2 == naive', () => {
    const w = weights('ddp-lora');
    expect(Object.keys(w).every((k) => k.includes('lora_'))).toBe(true);
    expect(relErr(flat(w), flat(naive.lora!.weights))).toBeLessThan(1e-5);
    expect(relErr(flat(weights('zero2-lora')), flat(naive.lora!.weights))).toBeLessThan(1e-5);
    const z = ranks('zero2-lora');
    const d = ranks('ddp-lora');
    expect(z[0]!.localStateSize + z[1]!.localStateSize).toBe(d[0]!.localStateSize);
  });

  it('a zero2 checkpoint resumes in naive, and a naive one in zero2, as if never interrupted', () => {
    // 3 steps on 2 zero2 ranks + 2 naive steps == 5 naive steps; and the other way round.
    expect(relErr(flat(naive.fromZero2!.weights), flat(naive.base!.weights))).toBeLessThan(1e-5);
    expect(relErr(flat(weights('zero2-from-naive')), flat(naive.base!.weights))).toBeLessThan(1e-5);
    expect(ranks('zero2-from-naive')[0]!.globalStep).toBe(5);
  });
});
