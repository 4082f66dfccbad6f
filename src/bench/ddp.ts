/**
 * Data-parallel throughput: SFT-style training steps (causal-LM loss, AdamW, clipping) on a GPT-2-shaped model with
 * `--strategy ddp` (or zero2) on 1 and on 2 MPI ranks, printing training tokens/s for each and the scaling.
 *
 *   npm run bench -- ddp [--ranks 1,2] [--strategy ddp|zero2] [--backend auto|native|wasm|cpu] [--steps 4] [--batch 4]
 *                        [--seq 128] [--layers 4] [--hidden 256] [--vocab 8192]
 *
 * Each rank keeps the per-rank batch, so 2 ranks process twice the tokens per step (weak scaling, as ddp is used).
 * (from source: `npx tsx src/bench/ddp.ts ...`). The launcher runs `mpirun -np N` on this same file; under mpirun the
 * file is the rank program. The first step (kernel warm-up) is not timed. The default model (5M parameters, 512 tokens
 * per rank and step) is big enough that compute, not the all-reduce, dominates a step. The backend is the CLIs' default
 * (auto: native where built); each rank runs one kernel thread (RLHF_THREADS, RLHF_BLAS_THREADS, RLHF_WASM_THREADS
 * default to 1 here), so the 1-rank run is one core and the 2-rank run two.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { tf } from '../engine/tf.js';
import { initBackend } from '../engine/backend.js';
import { Rng } from '../engine/rng.js';
import { normalizeConfig } from '../models/config.js';
import { DecoderModel } from '../models/decoder.js';
import { createStrategy } from '../strategies/strategy.js';
import { launcherWorld } from '../strategies/mpi.js';
import { Optimization } from '../trainer/optimization.js';

const OPTIONS = {
  ranks: { type: 'string', default: '1,2' },
  strategy: { type: 'string', default: 'ddp' },
  backend: { type: 'string', default: 'auto' },
  steps: { type: 'string', default: '4' },
  batch: { type: 'string', default: '4' },
  seq: { type: 'string', default: '128' },
  layers: { type: 'string', default: '4' },
  hidden: { type: 'string', default: '256' },
  vocab: { type: 'string', default: '8192' },
} as const;

type Args = { [K in keyof typeof OPTIONS]: string };

export interface RankReport {
  ranks: number;
  strategy: string;
  backend: string;
  params: number;
  tokensPerS: number;
  stepS: number;
  /** Seconds per step inside Optimization.step (gradient exchange, waiting for the slowest rank, AdamW). */
  updateS: number;
  /** Milliseconds of one all-reduce of a parameter-sized Float32Array. */
  allreduceMs: number;
}

/** The rank program: timed training steps, reported as one JSON line by rank 0. */
async function rank(a: Args): Promise<void> {
  const backend = await initBackend(a.backend, () => {});
  const strategy = createStrategy(a.strategy);
  const [B, T, steps] = [Number(a.batch), Number(a.seq), Number(a.steps)];
  const config = normalizeConfig({
    model_type: 'gpt2', vocab_size: Number(a.vocab), n_positions: T, n_embd: Number(a.hidden), n_layer: Number(a.layers),
    n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: 0, eos_token_id: 0,
  });
  const model = DecoderModel.fromConfig(config, 1);
  const opt = new Optimization(model.namedParameters(), {
    lr: 1e-4, weightDecay: 0.01, gradClip: 1, accumulationSteps: 1, warmupSteps: 0, totalSteps: steps + 1, schedule: 'constant',
  }, strategy);
  const rng = new Rng(100 + strategy.rank);
  let updateS = 0;
  const step = () => {
    const ids = tf.tensor2d(Array.from({ length: B * T }, () => rng.int(config.vocabSize)), [B, T], 'int32');
    opt.backward(() => model.lmLoss(model.forward(ids, { training: true }).hidden, ids) as tf.Scalar);
    ids.dispose();
    const u0 = performance.now();
    opt.step();
    updateS += (performance.now() - u0) / 1000;
  };
  step(); // warm-up
  strategy.barrier();
  updateS = 0;
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) step();
  strategy.barrier();
  const seconds = (performance.now() - t0) / 1000;
  const params = model.namedParameters().reduce((n, [, v]) => n + v.size, 0);
  // The communication cost alone: all-reduce of one gradient-sized buffer (the average of 5).
  const buffer = new Float32Array(params);
  strategy.barrier();
  const a0 = performance.now();
  for (let i = 0; i < 5; i++) allreduce(strategy, buffer);
  const allreduceMs = (performance.now() - a0) / 5;
  if (strategy.isMain()) {
    const report: RankReport = {
      ranks: strategy.worldSize, strategy: strategy.kind, backend, params,
      tokensPerS: (steps * B * T * strategy.worldSize) / seconds, stepS: seconds / steps, updateS: updateS / steps, allreduceMs,
    };
    console.log(`BENCH ${JSON.stringify(report)}`);
  }
  opt.dispose();
  model.dispose();
}

/** One all-reduce of `buffer` through the strategy's gradient path (a one-tensor gradient map). */
function allreduce(strategy: ReturnType<typeof createStrategy>, buffer: Float32Array): void {
  const reduced = strategy.reduceGradients(new Map([['x', tf.tensor1d(buffer)]]));
  for (const t of reduced.values()) t.dispose();
}

/** The launcher: one mpirun per rank count, then the table; returns each run's report. */
function launch(a: Args, print: (line: string) => void): RankReport[] {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const self = fileURLToPath(import.meta.url);
  const passOn = Object.entries(a).filter(([k]) => k !== 'ranks').flatMap(([k, v]) => [`--${k}`, v]);
  const reports: RankReport[] = [];
  for (const n of a.ranks.split(',').map(Number)) {
    const node = [process.execPath, ...(self.endsWith('.ts') ? ['--import', 'tsx'] : [])];
    const argv = ['--oversubscribe', ...(root ? ['--allow-run-as-root'] : []), '-np', String(n), ...node, self, ...passOn];
    const env = { ...process.env };
    for (const k of ['RLHF_THREADS', 'RLHF_BLAS_THREADS', 'RLHF_WASM_THREADS']) env[k] ??= '1';
    const r = spawnSync('mpirun', argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env });
    if (r.error) throw new Error(`mpirun could not start (${r.error.message}): apt-get install libopenmpi-dev openmpi-bin`);
    const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH '));
    if (r.status !== 0 || !line) throw new Error(`${n}-rank run failed (exit ${r.status}):\n${r.stderr.slice(-2000)}`);
    reports.push(JSON.parse(line.slice(6)) as RankReport);
  }
  const first = reports[0]!;
  print(`${first.strategy} on ${first.backend}: GPT-2 shape, ${first.params.toLocaleString('en')} parameters, batch ${a.batch} x ${a.seq} tokens per rank`);
  print('ranks  tokens/s  step_s  update_s  allreduce_ms  scaling');
  for (const r of reports) {
    const scaling = r.tokensPerS / first.tokensPerS;
    print(
      `${String(r.ranks).padStart(5)}  ${r.tokensPerS.toFixed(1).padStart(8)}  ${r.stepS.toFixed(3).padStart(6)}  ` +
        `${r.updateS.toFixed(3).padStart(8)}  ${r.allreduceMs.toFixed(1).padStart(12)}  ${scaling.toFixed(2)}x`,
    );
  }
  print(`(scaling = tokens/s over the ${first.ranks}-rank run; ${os.availableParallelism()} cores here, load average ${os.loadavg()[0]!.toFixed(1)})`);
  print(JSON.stringify({ suite: 'ddp', cores: os.availableParallelism(), runs: reports }));
  return reports;
}

/**
 * `ddp` benchmark entry point: launches the runs and returns their reports (or, under mpirun, is one rank of them and
 * returns null).
 */
export async function runDdpBench(argv: string[], print: (line: string) => void = console.log): Promise<RankReport[] | null> {
  const { values } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  const args = values as Args;
  if (launcherWorld()) {
    await rank(args);
    return null;
  }
  return launch(args, print);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runDdpBench(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    },
  );
}
