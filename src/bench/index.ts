#!/usr/bin/env node
/**
 * `npm run bench -- [foundation|sft] [--backend wasm|cpu|webgpu] [--quick]`: throughput of the model core on the
 * chosen backend, for models built from config (no download). Prints a table, then the same numbers as one JSON
 * object on stdout's last line (and in --json FILE). Progress goes to stderr.
 */
import { Command, Option } from 'commander';
import { cpus } from 'node:os';
import { tf } from '../engine/tf.js';
import { BACKENDS, initBackend, WASM_THREADS_ENV, wasmThreads } from '../engine/backend.js';
import { benchConfig, PRESETS, type PresetName } from './shapes.js';
import { load1 } from './measure.js';
import { emitJson, formatTable } from './report.js';
import { foundationSuite, sftSuite, type SuiteOptions } from './suites.js';

const SUITES = ['foundation', 'sft'] as const;
type Suite = (typeof SUITES)[number];

/** Reference shapes; on CPU backends the user may shrink them with flags (the output then says so). */
const REFERENCE: Record<Suite, { batch: number; seq: number }> = { foundation: { batch: 8, seq: 128 }, sft: { batch: 8, seq: 512 } };

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
  skipGeneration?: boolean; profile?: number; threads?: number; json?: string;
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('Benchmark training and generation throughput of the decoder on one backend')
    .argument('[suite]', `what to measure: ${SUITES.join(' | ')}`, 'foundation')
    .addOption(new Option('--backend <name>', 'tensor backend').choices([...BACKENDS]).default('wasm'))
    .option('--quick', 'fewer timed steps and 16 new tokens instead of 128 (stated in the output)')
    .addOption(new Option('--model <preset>', 'model shape').choices(Object.keys(PRESETS)).default('gpt2-124m'))
    .option('--layers <n>', 'override the number of layers', positiveInt('--layers'))
    .option('--width <n>', 'override the hidden width', positiveInt('--width'))
    .option('--heads <n>', 'override the number of heads', positiveInt('--heads'))
    .option('--vocab <n>', 'override the vocabulary size', positiveInt('--vocab'))
    .option('--batch <n>', 'training batch (foundation 8, sft 8)', positiveInt('--batch'))
    .option('--seq <n>', 'training sequence length (foundation 128, sft 512)', positiveInt('--seq'))
    .option('--steps <n>', 'timed training steps after the warm-up (2; --quick 1)', positiveInt('--steps'))
    .option('--gen-batch <n>', 'generation batch', positiveInt('--gen-batch'), 16)
    .option('--prompt-len <n>', 'generation prompt length', positiveInt('--prompt-len'), 64)
    .option('--new-tokens <n>', 'generated tokens per row (128; --quick 16)', positiveInt('--new-tokens'))
    .option('--skip-generation', 'time the training step only')
    .option('--profile [n]', 'print the top-n kernels of the profiled warm-up step (default 15)', (v) => positiveInt('--profile')(v))
    .option('--threads <n>', `wasm: XNNPACK threads (default: env ${WASM_THREADS_ENV}, else all cores)`, positiveInt('--threads'))
    .option('--json <file>', 'also write the JSON result to this file')
    .parse();
  const suite = program.args[0] as Suite;
  if (!(SUITES as readonly string[]).includes(suite)) throw new Error(`unknown suite "${suite}" (choose one of: ${SUITES.join(', ')})`);
  const f = program.opts<Flags>();
  if (f.threads) process.env[WASM_THREADS_ENV] = String(f.threads);
  const log = (m: string) => process.stderr.write(m + '\n');

  const backend = await initBackend(f.backend, log);
  const config = benchConfig(f.model, { layers: f.layers, width: f.width, heads: f.heads, vocab: f.vocab });
  const ref = REFERENCE[suite];
  const o: SuiteOptions = {
    batch: f.batch ?? ref.batch, seq: f.seq ?? ref.seq, steps: f.steps ?? (f.quick ? 1 : 2),
    genBatch: f.genBatch, promptLen: f.promptLen, newTokens: f.newTokens ?? (f.quick ? 16 : 128), decodeSteps: f.quick ? 3 : 5,
    skipGeneration: !!f.skipGeneration, profileTop: f.profile === undefined ? 0 : typeof f.profile === 'number' ? f.profile : 15, log,
  };
  const notes: string[] = [];
  if (o.batch !== ref.batch || o.seq !== ref.seq) notes.push(`training shape B=${o.batch} T=${o.seq} (reference B=${ref.batch} T=${ref.seq}, reduced by flags)`);
  if (f.quick) notes.push(`--quick: ${o.steps} timed step(s), ${o.newTokens} new tokens per row`);
  const threads = backend === 'wasm' ? wasmThreads() : null;
  const loadBefore = load1();

  let result;
  try {
    result = suite === 'foundation' ? await foundationSuite(config, o) : await sftSuite(config, o);
  } catch (e) {
    const msg = String((e as Error)?.message ?? e);
    if (/memory|OOM|allocat/i.test(msg)) {
      throw new Error(`out of memory at B=${o.batch} T=${o.seq} on ${backend} (${msg.split('\n')[0]}); the wasm heap is at most 4 GiB: try a smaller --batch or --seq`);
    }
    throw e;
  }
  const header = [
    `bench ${suite} — backend ${backend}${threads ? ` (${threads} thread${threads > 1 ? 's' : ''})` : ''}, ${cpus().length} cores, load ${loadBefore.toFixed(1)} → ${load1().toFixed(1)}`,
    `model gpt2 L${config.numLayers} C${config.hiddenSize} H${config.numHeads} V${config.vocabSize}`,
    ...notes.map((n) => `note: ${n}`),
  ].join('\n');
  process.stdout.write(formatTable(header, result.rows) + '\n');
  emitJson({
    suite, backend, threads, cores: cpus().length, load: [loadBefore, load1()], quick: !!f.quick,
    model: { layers: config.numLayers, width: config.hiddenSize, heads: config.numHeads, vocab: config.vocabSize },
    shape: { batch: o.batch, seq: o.seq, genBatch: o.genBatch, promptLen: o.promptLen, newTokens: o.newTokens },
    metrics: result.metrics,
    topKernels: result.profile.kernels.slice(0, 10).map((k) => ({ name: k.name, ms: Math.round(k.ms), share: +k.share.toFixed(3) })),
  }, f.json);
  void tf;
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`bench: ${String((e as Error)?.message ?? e)}\n`);
  process.exit(1);
});
