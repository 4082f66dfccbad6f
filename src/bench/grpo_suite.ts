/**
 * `grpo`: one rollout batch at G = 8 (o.genBatch completions: o.genBatch / 8 prompts of o.promptLen tokens, o.newTokens
 * sampled tokens each, top-k 50, no EOS so every row runs to the end), in new tokens/s; then GRPO updates on it
 * (grpoUpdate, the trainer's own step: one forward + backward over prompt + completion per micro-batch, AdamW) in
 * tokens/s, with random rewards standing in for the reward functions (their cost is the user's code).
 */
import { tf } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { DecoderModel } from '../models/decoder.js';
import type { ModelConfig } from '../models/config.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { sampleRollouts } from '../rollout/sample.js';
import { trainableParams } from '../rollout/policy.js';
import { naiveStrategy } from '../strategies/strategy.js';
import { computeAdvantages } from '../grpo/advantages.js';
import { GRPO_DEFAULTS } from '../grpo/config.js';
import { grpoUpdate, type ScoredBatch } from '../grpo/update.js';
import { medianTiming, timeIt, type Timing } from './measure.js';
import { formatProfile, profileCall } from './profile.js';
import type { Row } from './report.js';
import { frozenFormat, heapRow, paramCount, type SuiteOptions, type SuiteResult } from './suites.js';
import { wasmHeapBytes } from '../engine/memory.js';
import { benchOptimization, randomIds } from './workloads.js';

const MiB = 2 ** 20;
export const BENCH_GROUP = 8;

export async function grpoSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(5);
  const G = BENCH_GROUP;
  const nPrompts = Math.max(1, Math.floor(o.genBatch / G));
  const B = nPrompts * G;
  const loraRank = o.loraRank ?? 0;
  if (frozenFormat(o) && loraRank === 0) throw new Error(`--frozen-dtype ${o.frozenDtype}: the grpo suite holds no frozen model with full weights (give --lora-rank)`);
  const policy = DecoderModel.fromConfig(config, 0, frozenFormat(o));
  if (loraRank > 0) policy.lora = LoraAdapter.create(policy.spec, { r: loraRank, alpha: 16, dropout: 0, targetModules: DEFAULT_LORA_TARGETS[config.modelType]! }, 1);
  const opt = benchOptimization(trainableParams(policy), 1e-6);
  const strategy = naiveStrategy();
  const micro = Math.min(o.trainBatch ?? B, B);
  const modelsNote = loraRank > 0 ? `LoRA r=${loraRank}` : 'full weights';
  try {
    const prompts = randomIds(rng, nPrompts, o.promptLen, config.vocabSize);
    const ids = prompts.flatMap((p) => Array.from({ length: G }, () => p));
    const mask = ids.map((r) => r.map(() => 1));
    const sample = (maxNewTokens: number) => sampleRollouts(policy, ids, mask, { maxNewTokens, temperature: 1, topK: 50, topP: 1, eosTokenId: null, padTokenId: 0, rng });
    // 1. rollout
    const gshape = `${nPrompts} prompts × G=${G}, prompt=${o.promptLen} new=${o.newTokens}`;
    o.log(`rollout ${gshape} (${modelsNote}) …`);
    sample(2); // warm-up: creates the kernels' operators once
    const g = timeIt(() => sample(o.newTokens));
    const rollouts = g.result;
    const newTokens = rollouts.lengths.reduce((a, v) => a + v, 0);
    const genS = g.wallMs / 1000;

    // 2. updates on the batch, the trainer's own function (rewards random: every group has spread)
    const rewards = Array.from({ length: B }, () => rng.next());
    const scored: ScoredBatch = {
      rollouts, prompts: [], completions: [], rewards, perSource: [rewards], oldLogps: null, refLogps: null,
      advantages: computeAdvantages('grpo', { rewards, G, mask: rollouts.actionMask }), keep: rewards.map((_, b) => b), zeroStdGroups: 0, scoreSeconds: 0,
    };
    const cfg = { ...GRPO_DEFAULTS, maxNewTokens: o.newTokens, microBatchSize: micro };
    const T = rollouts.P + rollouts.N;
    const tshape = `${B} completions of T=${T} (prompt ${rollouts.P} + ${rollouts.N}), ${micro} per micro-batch`;
    let peak = 0;
    const update = () => {
      const m = grpoUpdate(policy, opt, strategy, scored, cfg);
      peak = Math.max(peak, tf.memory().numBytes);
      return m;
    };
    o.log(`GRPO update ${tshape}: warm-up (profiled) …`);
    const profile = await profileCall(update);
    if (o.profileTop > 0) o.log(formatProfile(`profile of one GRPO update (${tshape})`, profile, o.profileTop));
    const times: Timing[] = [];
    for (let i = 0; i < o.steps; i++) {
      times.push(timeIt(update));
      o.log(`  update ${i + 1}/${o.steps}: ${(times[i]!.wallMs / 1000).toFixed(2)} s`);
    }
    const t = medianTiming(times);
    const ts = t.wallMs / 1000;
    const trainTokens = B * T;
    peak = Math.max(peak, profile.peakBytes);
    const rows: Row[] = [
      { metric: 'parameters', value: paramCount(policy) / 1e6, unit: 'M', note: modelsNote },
      { metric: 'rollout new tokens/s', value: newTokens / genS, unit: 'tok/s', note: `${gshape}, top-k 50, KV cache (prefill included)` },
      { metric: 'rollout time', value: genS, unit: 's', note: `${newTokens} new tokens; CPU ${(g.cpuMs / 1000).toFixed(2)} s` },
      { metric: 'GRPO update tokens/s', value: trainTokens / ts, unit: 'tok/s', note: `${tshape}; fwd+bwd+AdamW` },
      { metric: 'GRPO update', value: ts, unit: 's', note: `median wall of ${o.steps}; CPU ${(t.cpuMs / 1000).toFixed(2)} s` },
      { metric: 'rollout share of a step', value: 100 * genS / (genS + ts), unit: '%', note: 'rollout / (rollout + one update), μ = 1' },
      { metric: 'GRPO peak tensor memory', value: peak / MiB, unit: 'MiB', note: 'max tf.memory().numBytes' },
      ...heapRow(),
    ];
    return {
      rows, profile,
      metrics: {
        grpo_rollout_tokens_per_s: newTokens / genS, grpo_rollout_s: genS, grpo_rollout_cpu_s: g.cpuMs / 1000, grpo_update_tokens_per_s: trainTokens / ts, grpo_update_s: ts,
        grpo_update_cpu_s: t.cpuMs / 1000, grpo_peak_bytes: peak, grpo_wasm_heap_bytes: wasmHeapBytes() ?? NaN, grpo_lora_rank: loraRank, grpo_group: G,
      },
    };
  } finally {
    opt.dispose();
    policy.dispose();
  }
}
