/**
 * The program the multi-process strategy tests launch under mpirun (one copy per rank), and the one-process reference
 * they compare with (its functions run in the test process with the naive strategy).
 *
 *   mpirun -np 2 node --import tsx test/strategies_worker.ts <out dir> '<json list of jobs>'
 *
 * Each job writes `<out>/<job name>/rank<r>.json` (losses, a weight checksum, optimizer state size, tokens/s) and,
 * from the main rank, `weights.json` (the trained weights).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tf } from '../src/engine/tf.js';
import { Rng } from '../src/engine/rng.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { causalLmLoss } from '../src/models/ops/loss.js';
import type { DecoderModel } from '../src/models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../src/models/lora.js';
import { Optimization } from '../src/trainer/optimization.js';
import { readOptimizerState, saveCheckpoint } from '../src/trainer/stage_checkpoint.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { createStrategy, type Strategy } from '../src/strategies/strategy.js';
import { mpiWorld } from '../src/strategies/mpi.js';
import type { SftConfigInput } from '../src/sft/index.js';
import type { RewardConfigInput } from '../src/reward/index.js';

export interface TrainOptions {
  /** Fixture model directory. */
  modelDir: string;
  /** Optimizer steps to take now, and the step the run starts at (after a resume). */
  steps: number;
  startStep?: number;
  /** Samples per rank per micro-batch (the naive reference uses batchPerRank x ranks). */
  batchPerRank: number;
  accumulationSteps: number;
  seqLen: number;
  lr: number;
  gradClip: number;
  weightDecay: number;
  /** Train a LoRA adapter of this rank instead of the full weights. */
  loraRank?: number;
}

/** Fixed-length token rows, all labelled: every rank's share has the same token count, so mean-of-means is exact. */
export function makeRows(count: number, seqLen: number, vocab: number, seed = 7): number[][] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => Array.from({ length: seqLen }, () => rng.int(vocab)));
}

export function loadModel(o: TrainOptions): DecoderModel {
  const { model } = loadPretrained(o.modelDir);
  if (o.loraRank) model.lora = LoraAdapter.create(model.spec, { r: o.loraRank, alpha: 16, dropout: 0, targetModules: DEFAULT_LORA_TARGETS[model.config.modelType]! }, 3);
  return model;
}

export function trainable(model: DecoderModel): [string, tf.Variable][] {
  return model.lora
    ? [...model.lora.modules].flatMap(([m, { A, B }]) => [[`${m}.lora_A.weight`, A], [`${m}.lora_B.weight`, B]] as [string, tf.Variable][])
    : model.namedParameters();
}

export function makeOptimization(model: DecoderModel, strategy: Strategy, o: TrainOptions): Optimization {
  return new Optimization(trainable(model), {
    lr: o.lr, weightDecay: o.weightDecay, gradClip: o.gradClip, accumulationSteps: o.accumulationSteps,
    warmupSteps: 1, totalSteps: 10, schedule: 'cosine',
  }, strategy);
}

/**
 * `o.steps` optimizer steps. Micro-batch k of the whole run is rows [k*G, (k+1)*G) (G = batchPerRank x ranks, wrapping
 * around), of which each rank takes `strategy.shard`: the naive run with the G-row batch sees the same rows.
 */
export function runSteps(model: DecoderModel, opt: Optimization, strategy: Strategy, o: TrainOptions): { losses: number[]; tokens: number } {
  const G = o.batchPerRank * strategy.worldSize;
  const rows = makeRows(64, o.seqLen, model.config.vocabSize);
  const losses: number[] = [];
  let tokens = 0;
  let micro = (o.startStep ?? 0) * o.accumulationSteps;
  for (let s = 0; s < o.steps; s++) {
    let sum = 0;
    while (!opt.ready()) {
      const global = Array.from({ length: G }, (_, i) => rows[(micro * G + i) % rows.length]!);
      micro += 1;
      const mine = strategy.shard(global);
      tokens += mine.length * o.seqLen;
      const ids = tf.tensor2d(mine, undefined, 'int32');
      sum += opt.backward(() => causalLmLoss(model.logits(model.forward(ids, { training: true }).hidden), ids) as tf.Scalar).loss;
      ids.dispose();
    }
    opt.step();
    losses.push(strategy.reduceMetrics({ 'train/loss': sum / o.accumulationSteps })['train/loss']!);
  }
  return { losses, tokens };
}

/** The trained weights, flattened in name order. */
export function weightsOf(model: DecoderModel): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [name, v] of trainable(model).sort(([a], [b]) => a.localeCompare(b))) out[name] = Array.from(v.dataSync());
  return out;
}

function checksum(w: Record<string, number[]>): number {
  let s = 0;
  let i = 0;
  for (const values of Object.values(w)) for (const x of values) s += x * (1 + (i++ % 7));
  return s;
}

async function saveResumable(dir: string, model: DecoderModel, opt: Optimization, strategy: Strategy, modelDir: string): Promise<void> {
  const tokenizer = await Tokenizer.fromDir(modelDir);
  await strategy.saveOnMain([opt], () =>
    saveCheckpoint(dir, { model, tokenizer, mergeLora: false, baseModelPath: modelDir, optimizers: { model: opt } }),
  );
}

/** Loads a checkpoint's optimizer state into `opt` (weights come with the model). */
export function resumeOptimizer(dir: string, opt: Optimization): void {
  const saved = readOptimizerState(dir, 'model');
  if (!saved) throw new Error(`${dir}: no optimizer state`);
  opt.loadStateDict(saved.state, saved.globalStep);
}

/** One job of a launch: a training run (or the collectives check) whose results go to `<out>/<name>/`. */
export interface Job extends TrainOptions {
  name: string;
  strategy: string;
  /** Continue from this checkpoint (its weights are `modelDir`, its optimizer state is loaded here). */
  resumeFrom?: string;
  /** Save a resumable checkpoint here after the steps (every rank takes part; the main rank writes). */
  saveTo?: string;
  /** 'fail' jobs: how rank 1 leaves after the first step. */
  fail?: 'SIGKILL' | 'SIGSTOP';
}

function collectivesJob(dir: string): void {
  const comm = mpiWorld('collectives test');
  const r = comm.rank;
  const a = new Float32Array([r + 1, 10 * (r + 1), -r]);
  comm.allreduce(a);
  const mx = new Float64Array([r, -r]);
  comm.allreduce(mx, 'max');
  const rs = comm.reduceScatter(Float32Array.from({ length: 5 }, (_, i) => i + 10 * r), [3, 2]);
  const ag = comm.allgather(r === 0 ? new Float32Array([1, 2, 3]) : new Float32Array([4, 5]), [3, 2]);
  const b = new Float32Array([r === 1 ? 42 : 0, r]);
  comm.broadcast(b, 1);
  comm.barrier();
  // The strategy-level reductions built on them.
  const ddp = createStrategy('ddp');
  const reduced = ddp.reduceGradients(new Map([['g', tf.tensor1d([r, 2 * r + 1])]]));
  const meanGrad = [...reduced.get('g')!.dataSync()];
  reduced.get('g')!.dispose();
  const metrics = { mean: ddp.reduceMetrics({ 'train/x': r + 1 }), sum: ddp.reduceMetrics({ 'train/x': r + 1 }, 'sum'), max: ddp.reduceMetrics({ 'train/x': r + 1 }, 'max') };
  const any = [ddp.anyRank(r === 1), ddp.anyRank(false)];
  const result = {
    rank: r, size: comm.size, allreduce: [...a], max: [...mx], reduceScatter: [...rs], allgather: [...ag], broadcast: [...b],
    meanGrad, metrics, any, shard: ddp.shard([10, 11, 12]),
  };
  writeFileSync(join(dir, `rank${r}.json`), JSON.stringify(result));
}

/** A whole stage run through its library entry point, as `train_sft` / `train_reward_model` would. */
export interface StageJob {
  name: string;
  stage: 'sft' | 'reward';
  config: SftConfigInput | RewardConfigInput;
}

export async function runStage(job: Pick<StageJob, 'stage' | 'config'>): Promise<{ steps: number }> {
  const quiet = { log: () => {}, progress: false };
  // Loaded on demand: the Optimization-level tests do not depend on the stage trainers.
  if (job.stage === 'sft') return (await import('../src/sft/index.js')).runSft(job.config as SftConfigInput, quiet);
  return (await import('../src/reward/index.js')).runRewardTraining(job.config as RewardConfigInput, quiet);
}

async function runJob(job: Job | StageJob, out: string): Promise<void> {
  const dir = join(out, job.name);
  mkdirSync(dir, { recursive: true });
  if ('stage' in job) {
    const { steps } = await runStage(job);
    writeFileSync(join(dir, `rank${mpiWorld(job.stage).rank}.json`), JSON.stringify({ steps }));
    return;
  }
  if (job.strategy === 'collectives') return collectivesJob(dir);
  const strategy = createStrategy(job.strategy);
  const model = loadModel(job);
  const opt = makeOptimization(model, strategy, job);
  if (job.fail) {
    for (let s = 0; s < 100; s++) {
      if (s === 1 && strategy.rank === 1) process.kill(process.pid, job.fail);
      runSteps(model, opt, strategy, { ...job, steps: 1, startStep: s });
    }
  }
  if (job.resumeFrom) resumeOptimizer(job.resumeFrom, opt);
  const t0 = performance.now();
  const { losses, tokens } = runSteps(model, opt, strategy, job);
  const seconds = (performance.now() - t0) / 1000;
  if (job.saveTo) await saveResumable(job.saveTo, model, opt, strategy, job.modelDir);
  const weights = weightsOf(model);
  const result = {
    rank: strategy.rank, worldSize: strategy.worldSize, losses, checksum: checksum(weights),
    localStateSize: opt.localStateSize(), globalStep: opt.globalStep, seconds,
    tokensPerS: strategy.reduceMetrics({ 'time/tokens': tokens }, 'sum')['time/tokens']! / seconds,
  };
  writeFileSync(join(dir, `rank${strategy.rank}.json`), JSON.stringify(result));
  if (strategy.isMain()) writeFileSync(join(dir, 'weights.json'), JSON.stringify(weights));
  opt.dispose();
  model.dispose();
}

/** argv: <out dir> <json list of jobs>, run in order. */
async function main(): Promise<void> {
  const [out, json] = process.argv.slice(2);
  if (!out || !json) throw new Error('usage: strategies_worker.ts <out dir> <json jobs>');
  await tf.setBackend('cpu');
  for (const job of JSON.parse(json) as (Job | StageJob)[]) await runJob(job, out);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    },
  );
}
