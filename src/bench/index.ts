#!/usr/bin/env node
/**
 * `npm run bench -- [foundation|sft|rm|ppo|grpo|dpo|memory] [--backend auto|wasm|cpu|webgpu] [--quick]`: throughput of
 * the model core and of each stage on the backend the CLIs would take (`--backend auto`) or the one given, for models
 * built from config (no download). Prints a table, then the same numbers as one JSON object on stdout's last line (and
 * in --json FILE). Progress goes to stderr. `--threads 1,all` runs the suite once per thread count, each in its own
 * process, and compares them; `memory` runs the large cases (memory_suite.ts) one process each, for their peak RSS.
 * `npm run bench -- ddp [...]` is the data-parallel benchmark (1 vs 2 MPI ranks; src/bench/ddp.ts has its flags).
 */
import { Command, Option } from 'commander';
import { cpus, tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig } from '../models/config.js';
import type { Row } from './report.js';
import { BACKEND_ENV, BACKENDS, initBackend, wasmThreads } from '../engine/backend.js';
import { setGradientCheckpointingDefault } from '../models/decoder.js';
import { memorySuite, MEMORY_CASES } from './memory_suite.js';
import { runBenchChild, threadEnv } from './children.js';
import { benchConfig, describeConfig, PRESETS, type PresetName } from './shapes.js';
import { load1 } from './measure.js';
import { emitJson, formatTable } from './report.js';
import { foundationSuite, sftSuite, type SuiteOptions, type SuiteResult } from './suites.js';
import { looksLikeOutOfMemory, outOfMemoryNote } from '../engine/memory.js';
import { FROZEN_DTYPES, type FrozenDtype } from '../models/frozen_dtype.js';
import { nativeBlasStatus, nativeMatmulInstalled } from '../engine/native_blas.js';
import { engineThreads } from '../engine/native_backend.js';
import { ppoSuite, rmSuite } from './rlhf_suites.js';
import { grpoSuite } from './grpo_suite.js';
import { dpoSuite } from './dpo_suite.js';

const SUITES = ['foundation', 'sft', 'rm', 'ppo', 'grpo', 'dpo', 'memory'] as const;
type Suite = Exclude<(typeof SUITES)[number], 'memory'>;

const GiB = 2 ** 30;

/** This process's peak resident memory (the high-water of everything: JS heap, wasm heap, native buffers). */
function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** `--threads` values: a count, or `all` for every core. */
function threadCount(v: string): number {
  if (v === 'all') return cpus().length;
  return positiveInt('--threads')(v);
}

/**
 * Reference shapes (rm: pairs and their length; ppo: the training minibatch is --train-batch, generation the --gen-*
 * flags); on CPU backends the user may shrink them with flags (the output then says so).
 */
const REFERENCE: Record<Suite, { batch: number; seq: number; model: PresetName }> = {
  foundation: { batch: 8, seq: 128, model: 'gpt2-124m' },
  sft: { batch: 8, seq: 512, model: 'gpt2-124m' },
  rm: { batch: 8, seq: 512, model: 'opt-125m' },
  ppo: { batch: 16, seq: 192, model: 'gpt2-124m' },
  grpo: { batch: 16, seq: 192, model: 'gpt2-124m' },
  dpo: { batch: 8, seq: 512, model: 'opt-125m' },
};

/** LoRA rank of the ppo suite when none is given: full weights need ~5 GiB for four 124M models and two AdamW. */
function defaultPpoLoraRank(backend: string): number {
  return backend === 'wasm' || backend === 'cpu' ? 8 : 0;
}

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer (got "${v}")`);
    return n;
  };
}

interface Flags {
  backend: string; quick?: boolean; model: PresetName; layers?: number; width?: number; heads?: number; vocab?: number;
  batch?: number; seq?: number; steps?: number; genBatch: number; promptLen: number; newTokens?: number;
  skipGeneration?: boolean; profile?: number; threads?: string; json?: string;
  microBatch?: number; loraRank?: number; trainBatch: number; gradientCheckpointing?: boolean; cases?: string; vsTorch?: boolean;
  frozenDtype?: FrozenDtype; switchOff?: string;
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('Benchmark training and generation throughput of the decoder on one backend')
    .argument('[suite]', `what to measure: ${SUITES.join(' | ')}`, 'foundation')
    .addOption(new Option('--backend <name>', `tensor backend, as the CLIs choose it (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .option('--quick', 'fewer timed steps and 16 new tokens instead of 128 (stated in the output)')
    .addOption(new Option('--model <preset>', 'model shape (default opt-125m for rm and dpo, else gpt2-124m)').choices(Object.keys(PRESETS)))
    .option('--layers <n>', 'override the number of layers', positiveInt('--layers'))
    .option('--width <n>', 'override the hidden width', positiveInt('--width'))
    .option('--heads <n>', 'override the number of heads', positiveInt('--heads'))
    .option('--vocab <n>', 'override the vocabulary size', positiveInt('--vocab'))
    .option('--batch <n>', 'training batch (foundation 8, sft 8; rm, dpo: 8 pairs)', positiveInt('--batch'))
    .option('--seq <n>', 'training sequence length (foundation 128, sft 512, rm 512, dpo 512)', positiveInt('--seq'))
    .option('--micro-batch <n>', 'sft: rows, rm/dpo: pairs per forward, accumulating gradients up to --batch (default: all)', positiveInt('--micro-batch'))
    .option('--lora-rank <r>', 'ppo: LoRA rank of actor and critic, 0 for full weights (default 0 on webgpu, 8 on wasm/cpu); grpo, dpo: of the policy (default 0)', (v) => (v === '0' ? 0 : positiveInt('--lora-rank')(v)))
    .option('--train-batch <n>', 'ppo: rollouts per PPO minibatch update; grpo: completions per micro-batch of the update', positiveInt('--train-batch'), 8)
    .option('--steps <n>', 'timed training steps after the warm-up (2; --quick 1)', positiveInt('--steps'))
    .option('--gen-batch <n>', 'generation batch (grpo: completions, in groups of 8)', positiveInt('--gen-batch'), 16)
    .option('--prompt-len <n>', 'generation prompt length', positiveInt('--prompt-len'), 64)
    .option('--new-tokens <n>', 'generated tokens per row (128; --quick 16)', positiveInt('--new-tokens'))
    .option('--skip-generation', 'time the training step only')
    .option('--switch-off <env>', 'foundation: alternate the timed training steps with this env switch of a fast path set to 0 (e.g. RLHF_FUSED_ATTENTION), in one process, and report both')
    .option('--profile [n]', 'print the top-n kernels of the profiled warm-up step (default 15)', (v) => positiveInt('--profile')(v))
    .option('--threads <n[,m…]>', 'threads of every CPU kernel (sets RLHF_THREADS, RLHF_BLAS_THREADS and RLHF_WASM_THREADS); a number or all (the cores); several (1,all) run the suite once per count, each in its own process, and compare them (default: each engine\'s own)')
    .addOption(new Option('--frozen-dtype <dtype>', 'precision of the frozen weights: sft/grpo/dpo with --lora-rank the base, ppo the bases (LoRA) or the initial and reward models, dpo with full weights the reference (default float32; memory: bf16 for every case that has frozen weights)').choices([...FROZEN_DTYPES]))
    .option('--gradient-checkpointing', 'recompute each block\'s forward in the backward pass (as --gradient_checkpointing of the training commands)')
    .option('--vs-torch', `foundation, sft: also run scripts/bench_vs_torch.py at the same shapes and threads (python from env ${TORCH_PYTHON_ENV}, else python3; needs torch and transformers) and print the ratios`)
    .option('--cases <names>', `memory: the cases to run, comma-separated (${MEMORY_CASES.map((c) => c.name).join(', ')}; default all)`)
    .option('--json <file>', 'also write the JSON result to this file')
    .parse();
  const name = program.args[0]!;
  if (!(SUITES as readonly string[]).includes(name)) throw new Error(`unknown suite "${name}" (choose one of: ${SUITES.join(', ')})`);
  const f = program.opts<Flags>();
  const log = (m: string) => process.stderr.write(m + '\n');
  const threadCounts = f.threads ? f.threads.split(',').map((t) => threadCount(t.trim())) : [];
  if (threadCounts.length > 1) return threadSweep(process.argv.slice(2), threadCounts, log, f.json);
  if (threadCounts.length === 1) Object.assign(process.env, threadEnv(threadCounts[0]!));
  if (f.gradientCheckpointing) setGradientCheckpointingDefault(true);

  const backend = await initBackend(f.backend, log);
  if (name === 'memory') return memoryMain(backend, f, log);
  const suite = name as Suite;
  const ref = REFERENCE[suite];
  const preset = f.model ?? ref.model;
  const config = benchConfig(preset, { layers: f.layers, width: f.width, heads: f.heads, vocab: f.vocab });
  const loraRank = f.loraRank ?? (suite === 'ppo' ? defaultPpoLoraRank(backend) : 0);
  const o: SuiteOptions = {
    batch: f.batch ?? ref.batch, seq: f.seq ?? ref.seq, steps: f.steps ?? (f.quick ? 1 : 2),
    genBatch: f.genBatch, promptLen: f.promptLen, newTokens: f.newTokens ?? (f.quick ? 16 : 128), decodeSteps: f.quick ? 3 : 5,
    // dpo: full weights unless --lora-rank is given (then the reference is the policy with its adapter off)
    microBatch: f.microBatch, loraRank: suite === 'dpo' ? (f.loraRank ?? 0) : loraRank, trainBatch: f.trainBatch, frozenDtype: f.frozenDtype,
    skipGeneration: !!f.skipGeneration, switchOff: f.switchOff, profileTop: f.profile === undefined ? 0 : typeof f.profile === 'number' ? f.profile : 15, log,
  };
  const notes: string[] = [];
  if (suite !== 'ppo' && suite !== 'grpo' && (o.batch !== ref.batch || o.seq !== ref.seq)) notes.push(`training shape B=${o.batch} T=${o.seq} (reference B=${ref.batch} T=${ref.seq}, changed by flags)`);
  if (suite === 'ppo' && (o.genBatch !== 16 || o.promptLen !== 64 || o.newTokens !== 128)) notes.push(`experience shape B=${o.genBatch} prompt=${o.promptLen} new=${o.newTokens} (reference 16, 64, 128)`);
  if (suite === 'dpo' && f.loraRank) notes.push(`LoRA r=${f.loraRank}: the reference is the policy with its adapter off`);
  if (suite === 'ppo' && f.loraRank === undefined && loraRank > 0) notes.push(`LoRA r=${loraRank} by default on ${backend} (four 124M models with two AdamW need ~5 GiB; --lora-rank 0 for full weights)`);
  const generates = (suite === 'foundation' && !o.skipGeneration) || suite === 'ppo' || suite === 'grpo';
  if (f.quick) notes.push(`--quick: ${o.steps} timed step(s)${generates ? `, ${o.newTokens} new tokens per row` : ''}`);
  const threads = backend === 'wasm' ? wasmThreads() : backend === 'native' ? engineThreads() : null;
  const blas = backend === 'wasm' && nativeMatmulInstalled();
  const loadBefore = load1();

  const suites: Record<Suite, (c: typeof config, o: SuiteOptions) => Promise<SuiteResult>> = {
    foundation: foundationSuite, sft: sftSuite, rm: rmSuite, ppo: ppoSuite, grpo: grpoSuite, dpo: dpoSuite,
  };
  let result;
  try {
    result = await suites[suite](config, o);
  } catch (e) {
    if (looksLikeOutOfMemory(e)) {
      const hint = { foundation: 'a smaller --batch or --seq', sft: '--micro-batch 2 (gradient accumulation) or a smaller --seq', rm: '--micro-batch 1 (gradient accumulation) or a smaller --seq', dpo: '--lora-rank 8 (the reference is then the policy with its adapter off), --micro-batch 1 or a smaller --seq', ppo: '--lora-rank 8, a smaller --train-batch or --new-tokens', grpo: '--lora-rank 8, a smaller --train-batch (completions per micro-batch) or --new-tokens' }[suite];
      const at = suite === 'ppo' || suite === 'grpo' ? `generation B=${o.genBatch}, train batch ${o.trainBatch}` : `B=${o.batch} T=${o.seq}`;
      throw new Error(`${outOfMemoryNote()} at ${at} (${String((e as Error)?.message ?? e).split('\n')[0]}): try ${hint}`);
    }
    throw e;
  }
  const peak = peakRssBytes();
  result.rows.push({ metric: 'peak RSS', value: peak / GiB, unit: 'GiB', note: 'of this process, whole run' });
  if (f.gradientCheckpointing) notes.push('--gradient-checkpointing: each block recomputed in the backward pass');
  if (f.frozenDtype && f.frozenDtype !== 'float32') notes.push(`--frozen-dtype ${f.frozenDtype}: the frozen weights packed, expanded inside the products`);
  const header = [
    `bench ${suite} — backend ${backend}${threads ? ` (${threads} thread${threads > 1 ? 's' : ''})` : ''}${blas ? ` + ${nativeBlasStatus()}` : ''}, ${cpus().length} cores, load ${loadBefore.toFixed(1)} → ${load1().toFixed(1)}`,
    `model ${preset}: ${describeConfig(config)}`,
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
  if (f.vsTorch) result.rows.push(...vsTorch(suite, config, o, threadCounts[0], result.metrics, log));
  process.stdout.write(formatTable(header, result.rows) + '\n');
  emitJson({
    suite, backend, threads, env_threads: threadCounts[0] ?? null, gradient_checkpointing: !!f.gradientCheckpointing, frozen_dtype: f.frozenDtype ?? 'float32', peak_rss_bytes: peak, openblas: blas ? nativeBlasStatus() : null, cores: cpus().length, load: [loadBefore, load1()], quick: !!f.quick,
    model: { preset, type: config.modelType, layers: config.numLayers, width: config.hiddenSize, heads: config.numHeads, kvHeads: config.numKvHeads, vocab: config.vocabSize },
    shape: { batch: o.batch, seq: o.seq, microBatch: o.microBatch ?? null, genBatch: o.genBatch, promptLen: o.promptLen, newTokens: o.newTokens, trainBatch: o.trainBatch, loraRank: suite === 'ppo' || suite === 'grpo' ? loraRank : null },
    metrics: result.metrics,
    topKernels: result.profile.kernels.slice(0, 10).map((k) => ({ name: k.name, ms: Math.round(k.ms), share: +k.share.toFixed(3) })),
  }, f.json);
}

const TORCH_PYTHON_ENV = 'RLHF_TORCH_PYTHON';

/** The same shapes in PyTorch (scripts/bench_vs_torch.py) run after ours, and each throughput as ours ÷ PyTorch's. */
function vsTorch(suite: Suite, config: ModelConfig, o: SuiteOptions, threads: number | undefined, ours: Record<string, number>, log: (m: string) => void): Row[] {
  if (suite !== 'foundation' && suite !== 'sft') throw new Error('--vs-torch compares the foundation and sft suites');
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-vs-torch-'));
  try {
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify(config.raw));
    const script = fileURLToPath(new URL('../../scripts/bench_vs_torch.py', import.meta.url));
    const args = [script, '--config', cfg, '--steps', String(o.steps), ...(threads ? ['--threads', String(threads)] : [])];
    if (suite === 'sft') args.push('--cases', 'sft', '--sft-batch', String(o.batch), '--sft-seq', String(o.seq));
    else {
      args.push('--cases', o.skipGeneration ? 'train' : 'train,generate', '--batch', String(o.batch), '--seq', String(o.seq));
      args.push('--gen-batch', String(o.genBatch), '--prompt-len', String(o.promptLen), '--new-tokens', String(o.newTokens));
    }
    const python = process.env[TORCH_PYTHON_ENV] ?? 'python3';
    log(`PyTorch at the same shapes: ${python} ${args.join(' ')}`);
    const r = spawnSync(python, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 * 2 ** 20 });
    if (r.error || r.status !== 0) throw new Error(`--vs-torch: ${python} scripts/bench_vs_torch.py failed (${r.error?.message ?? `exit ${r.status}`}); set ${TORCH_PYTHON_ENV} to a python with torch and transformers`);
    const lines = r.stdout.trim().split('\n');
    log(lines.slice(0, -1).join('\n'));
    const torch = JSON.parse(lines[lines.length - 1]!) as { torch: string; threads: number; metrics: Record<string, number> };
    const rows: Row[] = Object.entries(torch.metrics).filter(([k]) => k.endsWith('_per_s') && ours[k] !== undefined).map(([k, v]) => ({
      metric: `torch ${k}`, value: v, unit: 'tok/s', note: `PyTorch ${torch.torch} CPU, ${torch.threads} thread(s); ours ÷ PyTorch = ${(ours[k]! / v).toFixed(2)}×`,
    }));
    // On a loaded machine wall time depends on what else runs; the CPU time each side spent is the steadier ratio.
    const [tc, oc] = [torch.metrics.generate_cpu_s, ours.generate_cpu_s];
    if (tc !== undefined && oc !== undefined) {
      rows.push({ metric: 'torch generate CPU time', value: tc, unit: 's', note: `ours ${oc.toFixed(2)} s; ours ÷ PyTorch by CPU time = ${(tc / oc).toFixed(2)}× (same tokens)` });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `memory`: every case in its own process (memory_suite.ts). */
function memoryMain(backend: string, f: Flags, log: (m: string) => void): void {
  const threads = f.threads ? threadCount(f.threads) : undefined;
  const loadBefore = load1();
  // Other flags (shape overrides such as --layers, --seq) go to every case.
  const rest = process.argv.slice(2);
  rest.splice(rest.indexOf('memory'), 1);
  const extraArgs = withoutFlags(rest, ['--cases', '--json', '--backend', '--threads', '--frozen-dtype']);
  const r = memorySuite({ backend, cases: f.cases?.split(',').map((c) => c.trim()).filter(Boolean), threads, log, extraArgs, frozenDtype: f.frozenDtype });
  const header = `bench memory — backend ${backend}${threads ? `, ${threads} thread(s)` : ''}, ${cpus().length} cores, load ${loadBefore.toFixed(1)} → ${load1().toFixed(1)}; weights random from config shapes; each case one process`;
  process.stdout.write(formatTable(header, r.rows) + '\n');
  emitJson({ suite: 'memory', backend, cores: cpus().length, load: [loadBefore, load1()], metrics: r.metrics, cases: r.cases }, f.json);
}

/** `--threads a,b,…`: the same bench once per thread count, each in its own process, then the throughputs side by side. */
function threadSweep(argv: string[], counts: number[], log: (m: string) => void, json: string | undefined): void {
  const strip = withoutFlags(argv, ['--threads', '--json']);
  const runs = counts.map((n) => {
    log(`— ${n} thread(s) —`);
    const r = runBenchChild([...strip, '--threads', String(n)], { log });
    if (!r.ok) throw new Error(`the run with ${n} thread(s) failed: ${r.error}`);
    process.stdout.write(r.stdout.split('\n').slice(0, -2).join('\n') + '\n\n');
    return { threads: n, json: r.json! };
  });
  const metrics = runs[0]!.json.metrics as Record<string, number>;
  const keys = Object.keys(metrics).filter((k) => k.endsWith('_per_s'));
  const rows = keys.flatMap((k) => runs.map((run, i) => {
    const v = (run.json.metrics as Record<string, number>)[k]!;
    return { metric: i === 0 ? k : '', value: v, unit: `${run.threads} thr`, note: i === 0 ? '' : `${(v / metrics[k]!).toFixed(2)}× the ${runs[0]!.threads}-thread figure` };
  }));
  process.stdout.write(formatTable(`threads ${counts.join(' vs ')} — backend ${String(runs[0]!.json.backend)}`, rows) + '\n');
  emitJson({ suite: 'threads', runs: runs.map((r) => ({ ...r.json, sweep_threads: r.threads })) }, json);
}

/** argv without the given flags and their values. */
function withoutFlags(argv: string[], flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (flags.includes(a)) i++;
    else if (!flags.some((f) => a.startsWith(`${f}=`))) out.push(a);
  }
  return out;
}

const run = process.argv[2] === 'ddp' ? import('./ddp.js').then((m) => m.runDdpBench(process.argv.slice(3))) : main();
run.then(() => process.exit(0), (e) => {
  const msg = String((e as Error)?.message ?? e);
  process.stderr.write(`bench: ${process.env.RLHF_DEBUG ? (e as Error)?.stack ?? msg : msg}\n`);
  // A parent running this bench as a child (children.ts) reads why it failed from its --json file.
  const i = process.argv.indexOf('--json');
  if (i > 0 && process.argv[i + 1]) writeFileSync(process.argv[i + 1]!, JSON.stringify({ error: msg.split('\n')[0] }) + '\n');
  process.exit(1);
});
