/**
 * The two benchmark suites. `foundation`: training-step throughput (forward+backward), generation throughput with
 * the KV cache, decode cost early vs late in a sequence (equal when the cache works), peak tensor memory. `sft`: a
 * whole SFT step (forward, loss, backward, clipping, AdamW) at the SFT shape.
 */
import { tf } from '../engine/tf.js';
import { wasmHeapBytes } from '../engine/memory.js';
import { Rng } from '../engine/rng.js';
import { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import type { ModelConfig } from '../models/config.js';
import type { FrozenDtype } from '../models/frozen_dtype.js';
import type { PackedFormat } from '../models/ops/packed_weight.js';
import { medianTiming, timeIt, type Timing } from './measure.js';
import { formatProfile, profileCall, type ProfileSummary } from './profile.js';
import type { Row } from './report.js';
import { decodeStepMs, generateTokens, randomIds, sftLabels, sftOptimization, sftStep, trainStep } from './workloads.js';
import { withEnv } from '../engine/with_env.js';

export interface SuiteOptions {
  batch: number;
  seq: number;
  /** Timed steps after the (profiled) warm-up step. */
  steps: number;
  genBatch: number;
  promptLen: number;
  newTokens: number;
  /** Decode steps timed at each of the two positions. */
  decodeSteps: number;
  skipGeneration: boolean;
  /** rm: pairs per forward (gradient accumulation up to `batch`); default the whole batch. */
  microBatch?: number;
  /** ppo: LoRA rank of actor and critic (0: full weights); sft: of the model (adapter trained alone). */
  loraRank?: number;
  /** ppo: rollouts per PPO minibatch update. */
  trainBatch?: number;
  /**
   * Precision of the frozen weights (`--frozen-dtype`): sft, grpo and dpo with a LoRA rank, the base under the
   * adapter; ppo, the bases under both adapters (LoRA) or the initial and reward models (full weights); dpo with full
   * weights, the reference. Default float32.
   */
  frozenDtype?: FrozenDtype;
  /** Print the top-N kernels of the profiled step (0: do not print). */
  profileTop: number;
  /**
   * foundation: an env switch of a fast path (`RLHF_FUSED_ATTENTION`, …): the timed training steps alternate with it
   * set to 0, in this process on the same model and batch, and both medians are reported.
   */
  switchOff?: string;
  log: (msg: string) => void;
}

export interface SuiteResult {
  rows: Row[];
  metrics: Record<string, number>;
  profile: ProfileSummary;
}

const MiB = 1024 * 1024;

export function heapRow(): Row[] {
  const h = wasmHeapBytes();
  return h === null ? [] : [{ metric: 'wasm heap high-water', value: h / MiB, unit: 'MiB', note: 'of at most 4096 (wasm32)' }];
}

/** Parameters of the model, float32 and packed (adapters not counted). */
export function paramCount(model: DecoderModel): number {
  let n = model.namedParameters().reduce((s, [, v]) => s + v.size, 0);
  for (const w of model.packed.values()) n += w.shape[0] * w.shape[1];
  return n;
}

/** The packed format of the suite's frozen weights, or undefined for float32. */
export function frozenFormat(o: SuiteOptions): PackedFormat | undefined {
  return o.frozenDtype && o.frozenDtype !== 'float32' ? o.frozenDtype : undefined;
}

/** "frozen bf16: 238 MiB of weights" for a model's note. */
export function frozenNote(model: DecoderModel): string {
  return `frozen weights ${model.frozenDtype}: ${(model.weightBytes() / MiB).toFixed(0)} MiB`;
}

function paramBytes(model: DecoderModel): number {
  return paramCount(model) * 4;
}

function stepRows(prefix: string, tokens: number, t: Timing, p: ProfileSummary, shape: string): Row[] {
  return [
    { metric: `${prefix} tokens/s`, value: tokens / (t.wallMs / 1000), unit: 'tok/s', note: shape },
    { metric: `${prefix} step`, value: t.wallMs / 1000, unit: 's', note: `median wall; CPU ${(t.cpuMs / 1000).toFixed(2)} s` },
    { metric: `${prefix} matmul share`, value: 100 * p.matmulShare, unit: '%', note: 'of kernel time, profiled warm-up step' },
    { metric: `${prefix} peak tensor memory`, value: p.peakBytes / MiB, unit: 'MiB', note: 'max tf.memory().numBytes' },
  ];
}

export async function foundationSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(1);
  const model = DecoderModel.fromConfig(config, 0);
  const V = config.vocabSize;
  const rows: Row[] = [{ metric: 'parameters', value: paramBytes(model) / 4 / 1e6, unit: 'M', note: `${(paramBytes(model) / MiB).toFixed(0)} MiB float32` }];
  const metrics: Record<string, number> = {};
  try {
    // 1. forward + backward
    const shape = `B=${o.batch} T=${o.seq}`;
    o.log(`training step ${shape}: warm-up (profiled) …`);
    const ids = tf.tensor2d(randomIds(rng, o.batch, o.seq, V), undefined, 'int32');
    const t0 = performance.now();
    const profile = await profileCall(() => trainStep(model, ids));
    // The profiled step runs tfjs's profiling path; a short step gets one plain step too, so the timed steps run
    // warmed-up code as PyTorch's (timed after one warm-up) do (the first plain step of tiny-chat took 5–30% longer).
    if (performance.now() - t0 < 2000) trainStep(model, ids);
    if (o.profileTop > 0) o.log(formatProfile(`profile of one forward+backward step (${shape})`, profile, o.profileTop));
    const times: Timing[] = [];
    const offTimes: Timing[] = [];
    for (let i = 0; i < o.steps; i++) {
      times.push(timeIt(() => trainStep(model, ids)));
      o.log(`  step ${i + 1}/${o.steps}: ${(times[i]!.wallMs / 1000).toFixed(2)} s`);
      if (o.switchOff) {
        offTimes.push(withEnv(o.switchOff, '0', () => timeIt(() => trainStep(model, ids))));
        o.log(`  step ${i + 1}/${o.steps} with ${o.switchOff}=0: ${(offTimes[i]!.wallMs / 1000).toFixed(2)} s`);
      }
    }
    ids.dispose();
    const t = medianTiming(times);
    rows.push(...stepRows('fwd+bwd', o.batch * o.seq, t, profile, shape), ...heapRow());
    if (o.switchOff) {
      const off = medianTiming(offTimes);
      rows.push({ metric: `fwd+bwd step, ${o.switchOff}=0`, value: off.wallMs / 1000, unit: 's', note: `median wall, steps alternating with the above; CPU ${(off.cpuMs / 1000).toFixed(3)} s vs ${(t.cpuMs / 1000).toFixed(3)} s` });
      Object.assign(metrics, { train_step_switched_off_s: off.wallMs / 1000, train_step_switched_off_cpu_s: off.cpuMs / 1000 });
    }
    Object.assign(metrics, {
      train_tokens_per_s: (o.batch * o.seq) / (t.wallMs / 1000), train_step_s: t.wallMs / 1000, train_step_cpu_s: t.cpuMs / 1000,
      train_matmul_share: profile.matmulShare, train_peak_bytes: profile.peakBytes, train_wasm_heap_bytes: wasmHeapBytes() ?? NaN,
    });

    if (!o.skipGeneration) {
      // 2. generation with the KV cache
      const gshape = `B=${o.genBatch} prompt=${o.promptLen} new=${o.newTokens}`;
      o.log(`generation ${gshape} …`);
      const prompts = randomIds(rng, o.genBatch, o.promptLen, V);
      generateTokens(model, prompts, 2); // warm-up: creates the kernels' operators once
      const g = timeIt(() => generateTokens(model, prompts, o.newTokens));
      const perS = (o.genBatch * g.result) / (g.wallMs / 1000);
      rows.push({ metric: 'generate new tokens/s', value: perS, unit: 'tok/s', note: `${gshape}, greedy, KV cache, prefill included` });
      metrics.generate_tokens_per_s = perS;
      metrics.generate_s = g.wallMs / 1000;
      metrics.generate_cpu_s = g.cpuMs / 1000;

      // 3. decode cost early vs late: the cache makes a step's cost (nearly) independent of the position
      o.log(`decode steps at positions ~10 and ~120 (B=${o.genBatch}) …`);
      const e = decodeStepMs(model, rng, o.genBatch, 10, o.decodeSteps);
      const l = decodeStepMs(model, rng, o.genBatch, 120, o.decodeSteps);
      const [early, late] = [e.wallMs, l.wallMs];
      rows.push(
        { metric: 'decode step @ pos 10', value: early, unit: 'ms', note: `B=${o.genBatch}, median of ${o.decodeSteps}; CPU ${e.cpuMs.toFixed(1)} ms` },
        { metric: 'decode step @ pos 120', value: late, unit: 'ms', note: `ratio ${(late / early).toFixed(2)} (≈1 expected); CPU ${l.cpuMs.toFixed(1)} ms` },
      );
      Object.assign(metrics, {
        decode_ms_pos10: early, decode_ms_pos120: late, decode_ratio: late / early, decode_cpu_ms_pos10: e.cpuMs, decode_cpu_ms_pos120: l.cpuMs,
      });
    }
    return { rows, metrics, profile };
  } finally {
    model.dispose();
  }
}

export async function sftSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(2);
  const r = o.loraRank ?? 0;
  if (frozenFormat(o) && r === 0) throw new Error(`--frozen-dtype ${o.frozenDtype}: full-weight SFT has no frozen weights (give --lora-rank)`);
  const model = DecoderModel.fromConfig(config, 0, frozenFormat(o));
  const micro = Math.min(o.microBatch ?? o.batch, o.batch);
  if (o.batch % micro !== 0) throw new Error(`--micro-batch ${micro} must divide the batch of ${o.batch}`);
  if (r > 0) model.lora = LoraAdapter.create(model.spec, { r, alpha: 2 * r, dropout: 0, targetModules: DEFAULT_LORA_TARGETS[config.modelType]! }, 1);
  const opt = sftOptimization(model, o.batch / micro);
  const shape = `B=${o.batch} T=${o.seq}${micro < o.batch ? `, ${micro} row${micro > 1 ? 's' : ''} per micro-batch` : ''}${r > 0 ? `, LoRA r=${r}` : ''}`;
  const rows: Row[] = [{ metric: 'parameters', value: paramBytes(model) / 4 / 1e6, unit: 'M', note: r > 0 ? `${frozenNote(model)}; LoRA ${(model.lora!.trainableVariables().reduce((a, v) => a + v.size, 0) / 1e6).toFixed(2)} M trained` : undefined }];
  const batches: { ids: tf.Tensor; labels: tf.Tensor }[] = [];
  try {
    for (let i = 0; i < o.batch / micro; i++) {
      const raw = randomIds(rng, micro, o.seq, config.vocabSize);
      batches.push({ ids: tf.tensor2d(raw, undefined, 'int32'), labels: tf.tensor2d(sftLabels(raw), undefined, 'int32') });
    }
    o.log(`SFT step ${shape}: warm-up (profiled) …`);
    const profile = await profileCall(() => sftStep(model, opt, batches));
    if (o.profileTop > 0) o.log(formatProfile(`profile of one SFT step (${shape})`, profile, o.profileTop));
    const times: Timing[] = [];
    const split: { backwardMs: number; optimizerMs: number }[] = [];
    for (let i = 0; i < o.steps; i++) {
      const t = timeIt(() => sftStep(model, opt, batches));
      times.push(t);
      split.push(t.result);
      o.log(`  step ${i + 1}/${o.steps}: ${(t.wallMs / 1000).toFixed(2)} s (optimizer ${(t.result.optimizerMs / 1000).toFixed(2)} s)`);
    }
    const t = medianTiming(times);
    const optMs = medianTiming(split.map((s) => ({ wallMs: s.optimizerMs, cpuMs: 0 }))).wallMs;
    rows.push(...stepRows('SFT', o.batch * o.seq, t, profile, shape), ...heapRow());
    rows.push({ metric: 'SFT optimizer part', value: optMs / 1000, unit: 's', note: 'clip + AdamW, inside the step' });
    return {
      rows, profile,
      metrics: {
        sft_tokens_per_s: (o.batch * o.seq) / (t.wallMs / 1000), sft_step_s: t.wallMs / 1000, sft_step_cpu_s: t.cpuMs / 1000,
        sft_optimizer_s: optMs / 1000, sft_matmul_share: profile.matmulShare, sft_peak_bytes: profile.peakBytes,
        sft_wasm_heap_bytes: wasmHeapBytes() ?? NaN,
      },
    };
  } finally {
    for (const b of batches) tf.dispose([b.ids, b.labels]);
    opt.dispose();
    model.dispose();
  }
}
