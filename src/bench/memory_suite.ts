/**
 * `npm run bench -- memory`: the large cases of issue 16, each in its own process (children.ts) so its peak RSS is
 * its own, with its throughput. Weights are random from the config shapes (shapes.ts), no download. A case whose
 * weights and optimizer state alone exceed the backend's memory (wasm: the 4 GiB wasm32 heap) is reported as not
 * fitting without being run; one that runs out of memory anyway is reported with the child's error. Frozen weights (the
 * base under LoRA, PPO's initial and reward models) are held in bf16 unless `--frozen-dtype` says otherwise, as a
 * run on this much memory would hold them; each case states its format.
 */
import { benchConfig, type PresetName } from './shapes.js';
import { buildSpec, parameterShapes } from '../models/architectures.js';
import { linearsOf } from '../models/architectures.js';
import { DEFAULT_LORA_TARGETS, matchesTarget } from '../models/lora.js';
import type { Row } from './report.js';
import { runBenchChild, threadEnv } from './children.js';
import type { FrozenDtype } from '../models/frozen_dtype.js';

export interface MemoryCase {
  name: string;
  what: string;
  preset: PresetName;
  /** The bench suite and its flags (shape, LoRA, steps) the child runs. */
  suite: 'sft' | 'rm' | 'ppo';
  args: string[];
  /**
   * Copies of the base weights held, and how many of them are trained in full (AdamW: weights, gradient, 2 moments);
   * the others are frozen (held in the case's frozen dtype).
   */
  copies: number;
  fullyTrained: number;
  loraRank: number;
  /** Activation recompute, and why the case uses it. */
  checkpointing: boolean;
  why?: string;
  /** The metric the case's throughput is read from, and its unit. */
  metric: string;
  /** A peak the case should stay under (PPO + LoRA: ColossalChat's 1.6 GiB). */
  budgetBytes?: number;
}

const GiB = 2 ** 30;

/** The child's CPU seconds (user + sys) of the timed step, by suite: a figure load on a shared machine distorts less than wall time. */
const STEP_CPU_METRIC: Record<MemoryCase['suite'], string> = { sft: 'sft_step_cpu_s', rm: 'rm_step_cpu_s', ppo: 'ppo_update_cpu_s' };

/** The frozen dtype of the memory cases unless --frozen-dtype is given. */
export const MEMORY_FROZEN_DTYPE: FrozenDtype = 'bf16';

/** Bytes per frozen weight (packed bits; int8's and nf4's scales left out: a lower bound). */
const FROZEN_BYTES: Record<FrozenDtype, number> = { float32: 4, bf16: 2, int8: 1, nf4: 0.5 };

/** The case's frozen dtype: null when it trains every weight it holds. */
export function caseFrozenDtype(c: MemoryCase, asked?: FrozenDtype): FrozenDtype | null {
  return c.copies > c.fullyTrained ? (asked ?? MEMORY_FROZEN_DTYPE) : null;
}

export const MEMORY_CASES: MemoryCase[] = [
  {
    name: 'sft-gpt2-124m', what: 'full-weight SFT, GPT-2 124M, B8×T512 in one micro-batch', preset: 'gpt2-124m', suite: 'sft',
    args: ['--batch', '8', '--seq', '512'], copies: 1, fullyTrained: 1, loraRank: 0, checkpointing: true, metric: 'sft_tokens_per_s',
    why: 'without it 2 rows per micro-batch already exceed the 4 GiB wasm heap',
  },
  {
    name: 'rm-opt-350m', what: 'full-weight reward model, OPT-350m, 8 pairs, T≤512', preset: 'opt-350m', suite: 'rm',
    args: ['--batch', '8', '--seq', '512'], copies: 1, fullyTrained: 1, loraRank: 0, checkpointing: true, metric: 'rm_tokens_per_s',
  },
  {
    name: 'lora-sft-opt-1.3b', what: 'LoRA SFT (r=8, q/v), OPT-1.3B, B4×T512', preset: 'opt-1.3b', suite: 'sft',
    args: ['--batch', '4', '--seq', '512', '--lora-rank', '8'], copies: 1, fullyTrained: 0, loraRank: 8, checkpointing: true, metric: 'sft_tokens_per_s',
  },
  {
    name: 'lora-sft-qwen2.5-1.5b', what: 'LoRA SFT (r=8, q/v), Qwen2.5-1.5B, B4×T512', preset: 'qwen2.5-1.5b', suite: 'sft',
    args: ['--batch', '4', '--seq', '512', '--lora-rank', '8'], copies: 1, fullyTrained: 0, loraRank: 8, checkpointing: true, metric: 'sft_tokens_per_s',
  },
  {
    name: 'ppo-gpt2-124m', what: 'PPO, GPT-2 124M, full weights: actor, critic, frozen reference and reward model', preset: 'gpt2-124m', suite: 'ppo',
    args: ['--lora-rank', '0'], copies: 4, fullyTrained: 2, loraRank: 0, checkpointing: true, metric: 'ppo_train_tokens_per_s',
  },
  {
    name: 'ppo-lora-gpt2-124m', what: 'PPO + LoRA (r=8), GPT-2 124M (reference and reward model share the bases)', preset: 'gpt2-124m', suite: 'ppo',
    args: ['--lora-rank', '8'], copies: 2, fullyTrained: 0, loraRank: 8, checkpointing: true, metric: 'ppo_train_tokens_per_s',
    budgetBytes: 1.6 * GiB,
  },
];

/** Toy shapes for tests: every case's code path at a few thousand parameters. */
export const TINY_ARGS = ['--layers', '1', '--width', '32', '--heads', '2', '--vocab', '97', '--batch', '2', '--seq', '16', '--gen-batch', '2', '--prompt-len', '4', '--new-tokens', '3', '--train-batch', '2'];

/**
 * The least memory a case needs whatever the activations: trained weights in float32 with their gradient and AdamW
 * moments, frozen ones in `frozen` (default the case's own), adapters with theirs.
 */
export function minimumBytes(c: MemoryCase, overrides: string[] = [], frozen: FrozenDtype | null = caseFrozenDtype(c)): number {
  const flag = (name: string) => {
    const i = overrides.lastIndexOf(name);
    return i >= 0 ? Number(overrides[i + 1]) : undefined;
  };
  const config = benchConfig(c.preset, { layers: flag('--layers'), width: flag('--width'), heads: flag('--heads'), vocab: flag('--vocab') });
  const spec = buildSpec(config);
  const params = [...parameterShapes(config, spec).values()].reduce((s, i) => s + i.shape.reduce((a, b) => a * b, 1), 0);
  let lora = 0;
  if (c.loraRank) {
    const targets = DEFAULT_LORA_TARGETS[config.modelType]!;
    for (const l of spec.layers.flatMap(linearsOf)) if (matchesTarget(l.module, targets)) lora += c.loraRank * (l.inDim + l.outDim);
  }
  const trainedLoras = c.suite === 'ppo' ? 2 : 1;
  return 16 * params * c.fullyTrained + FROZEN_BYTES[frozen ?? 'float32'] * params * (c.copies - c.fullyTrained) + (c.loraRank ? 16 * lora * trainedLoras : 0);
}

/** Memory a backend can give one process, when it has a hard limit. */
export function backendLimitBytes(backend: string): number | null {
  return backend === 'wasm' ? 4 * GiB : null;
}

export interface MemoryOptions {
  backend: string;
  /** Case names to run (default all). */
  cases?: string[];
  /** Extra flags for every child (tests: TINY_ARGS). */
  extraArgs?: string[];
  threads?: number;
  /** Frozen weights' dtype for the cases that hold any (default MEMORY_FROZEN_DTYPE). */
  frozenDtype?: FrozenDtype;
  /** How to start the bench in a child (default: this node and entry point). */
  command?: string[];
  log: (m: string) => void;
}

export interface MemoryResult {
  rows: Row[];
  metrics: Record<string, number>;
  cases: {
    name: string; fits: boolean; peakRssBytes: number | null; tokensPerS: number | null; stepCpuS: number | null; checkpointing: boolean;
    frozenDtype: FrozenDtype | null; note: string;
  }[];
}

export function memorySuite(o: MemoryOptions): MemoryResult {
  const chosen = o.cases?.length ? MEMORY_CASES.filter((c) => o.cases!.includes(c.name)) : MEMORY_CASES;
  const unknown = (o.cases ?? []).filter((n) => !MEMORY_CASES.some((c) => c.name === n));
  if (unknown.length) throw new Error(`unknown memory case(s) ${unknown.join(', ')} (choose from: ${MEMORY_CASES.map((c) => c.name).join(', ')})`);
  const rows: Row[] = [];
  const metrics: Record<string, number> = {};
  const cases: MemoryResult['cases'] = [];
  const limit = backendLimitBytes(o.backend);
  for (const c of chosen) {
    const extra = o.extraArgs ?? [];
    const frozen = caseFrozenDtype(c, o.frozenDtype);
    const need = minimumBytes(c, extra, frozen);
    const recompute = c.checkpointing ? `; with --gradient_checkpointing${c.why ? ` (${c.why})` : ''}` : '';
    const held = frozen ? `; frozen weights ${frozen}` : '; no frozen weights';
    if (limit !== null && need > limit) {
      const note = `does not fit on ${o.backend}: its weights and optimizer state alone take ${(need / GiB).toFixed(1)} GiB of at most ${(limit / GiB).toFixed(0)} (not run)`;
      o.log(`${c.name}: ${note}`);
      rows.push({ metric: `${c.name} peak RSS`, value: NaN, unit: 'GiB', note: `${c.what}${held}: ${note}` });
      cases.push({ name: c.name, fits: false, peakRssBytes: null, tokensPerS: null, stepCpuS: null, checkpointing: c.checkpointing, frozenDtype: frozen, note });
      continue;
    }
    o.log(`${c.name}: ${c.what}${recompute}${held} …`);
    const argv = [
      c.suite, '--model', c.preset, '--backend', o.backend, '--steps', '1', ...c.args, ...(c.checkpointing ? ['--gradient-checkpointing'] : []),
      ...(frozen ? ['--frozen-dtype', frozen] : []), ...extra,
    ];
    const r = runBenchChild(argv, { env: o.threads ? threadEnv(o.threads) : undefined, command: o.command, log: o.log });
    if (!r.ok) {
      const note = `did not run to the end on ${o.backend}: ${r.error}`;
      rows.push({ metric: `${c.name} peak RSS`, value: NaN, unit: 'GiB', note: `${c.what}${held}: ${note}` });
      cases.push({ name: c.name, fits: false, peakRssBytes: null, tokensPerS: null, stepCpuS: null, checkpointing: c.checkpointing, frozenDtype: frozen, note });
      continue;
    }
    const peak = Number(r.json!.peak_rss_bytes);
    const tps = Number((r.json!.metrics as Record<string, number>)[c.metric]);
    const cpu = Number((r.json!.metrics as Record<string, number>)[STEP_CPU_METRIC[c.suite]]);
    const budget = c.budgetBytes ? `; ${peak <= c.budgetBytes ? 'within' : 'OVER'} the ${(c.budgetBytes / GiB).toFixed(1)} GiB budget` : '';
    rows.push(
      { metric: `${c.name} peak RSS`, value: peak / GiB, unit: 'GiB', note: `${c.what}${held}${recompute}${budget}` },
      { metric: `${c.name} tokens/s`, value: tps, unit: 'tok/s', note: `${c.metric}; CPU ${cpu.toFixed(1)} s per step` },
    );
    metrics[`${c.name}_peak_rss_bytes`] = peak;
    metrics[`${c.name}_tokens_per_s`] = tps;
    metrics[`${c.name}_step_cpu_s`] = cpu;
    cases.push({ name: c.name, fits: true, peakRssBytes: peak, tokensPerS: tps, stepCpuS: cpu, checkpointing: c.checkpointing, frozenDtype: frozen, note: budget.replace(/^; /, '') });
  }
  return { rows, metrics, cases };
}
