/**
 * The stage benchmarks. `rm`: reward-model training steps (both sides of every pair scored in one forward, log_sig
 * loss, backward, clipping, AdamW) in pairs/s, with gradient accumulation over micro-batches when the whole batch
 * does not fit. `ppo`: experience making (sampled rollouts with the KV cache, then one forward each of actor, initial
 * model, critic and reward model) in new tokens/s, and PPO minibatch updates (actor and critic) in tokens/s. Both run
 * the trainers' own functions (pairBatchLoss, makeExperience, ppoTrainStep) on models built from config.
 */
import { tf } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { DecoderModel } from '../models/decoder.js';
import type { ModelConfig } from '../models/config.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { ValueHead } from '../models/value_head.js';
import { ValueModel } from '../models/value_model.js';
import { collatePairs, type TokenizedPair } from '../reward/dataset.js';
import { logSigLoss } from '../reward/losses.js';
import { RewardModel } from '../reward/model.js';
import { pairBatchLoss } from '../reward/trainer.js';
import { makeExperience, type ExperienceModels } from '../ppo/experience.js';
import { criticParams, trainableParams } from '../ppo/models.js';
import { ReplayBuffer } from '../ppo/replay_buffer.js';
import { ppoTrainStep } from '../ppo/train_step.js';
import { PPO_DEFAULTS } from '../ppo/config.js';
import { medianTiming, timeIt, type Timing } from './measure.js';
import { formatProfile, profileCall } from './profile.js';
import type { Row } from './report.js';
import { frozenFormat, frozenNote, heapRow, paramCount, type SuiteOptions, type SuiteResult } from './suites.js';
import type { PackedFormat } from '../models/ops/packed_weight.js';
import { wasmHeapBytes } from '../engine/memory.js';
import { benchOptimization, randomIds } from './workloads.js';

const MiB = 2 ** 20;

/** A random pair of T-token-or-shorter sequences (real lengths between T/2 and T, as dialogues vary). */
function randomPair(rng: Rng, T: number, V: number): TokenizedPair {
  const len = () => Math.ceil(T / 2) + rng.int(T - Math.ceil(T / 2) + 1);
  const seq = () => randomIds(rng, 1, len(), V)[0]!;
  return { chosen: seq(), rejected: seq() };
}

/** `rm`: o.batch pairs per optimizer step (o.microBatch pairs per forward), sequences up to o.seq tokens. */
export async function rmSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(3);
  if (frozenFormat(o)) throw new Error(`--frozen-dtype ${o.frozenDtype}: the rm suite trains every weight, so nothing is frozen`);
  const micro = Math.min(o.microBatch ?? o.batch, o.batch);
  if (o.batch % micro !== 0) throw new Error(`--micro-batch ${micro} must divide the batch of ${o.batch} pairs`);
  const model = new RewardModel(DecoderModel.fromConfig(config, 0), ValueHead.create(config.wordEmbedDim, 1));
  const opt = benchOptimization(model.trainableParameters(), 5e-6, { accumulationSteps: o.batch / micro });
  const pairs = Array.from({ length: o.batch }, () => randomPair(rng, o.seq, config.vocabSize));
  const batches = Array.from({ length: o.batch / micro }, (_, i) => collatePairs(pairs.slice(i * micro, (i + 1) * micro), 0));
  const realTokens = batches.reduce((s, b) => s + b.tokens, 0);
  const shape = `${o.batch} pairs, T≤${o.seq}${micro < o.batch ? `, ${micro} per micro-batch` : ''}`;
  const step = () => {
    for (const b of batches) opt.backward((aux) => pairBatchLoss(model, logSigLoss, b, aux, true));
    return opt.step();
  };
  try {
    o.log(`reward-model step (${shape}): warm-up (profiled) …`);
    const profile = await profileCall(step);
    if (o.profileTop > 0) o.log(formatProfile(`profile of one reward-model step (${shape})`, profile, o.profileTop));
    const times: Timing[] = [];
    for (let i = 0; i < o.steps; i++) {
      times.push(timeIt(step));
      o.log(`  step ${i + 1}/${o.steps}: ${(times[i]!.wallMs / 1000).toFixed(2)} s`);
    }
    const t = medianTiming(times);
    const s = t.wallMs / 1000;
    const rows: Row[] = [
      { metric: 'parameters', value: paramCount(model.backbone) / 1e6, unit: 'M', note: 'backbone; + value head' },
      { metric: 'RM pairs/s', value: o.batch / s, unit: 'pairs/s', note: shape },
      { metric: 'RM tokens/s', value: realTokens / s, unit: 'tok/s', note: `${realTokens} real tokens per step (padding not counted)` },
      { metric: 'RM step', value: s, unit: 's', note: `median wall; CPU ${(t.cpuMs / 1000).toFixed(2)} s` },
      { metric: 'RM matmul share', value: 100 * profile.matmulShare, unit: '%', note: 'of kernel time, profiled warm-up step' },
      { metric: 'RM peak tensor memory', value: profile.peakBytes / MiB, unit: 'MiB', note: 'max tf.memory().numBytes' },
      ...heapRow(),
    ];
    return {
      rows, profile,
      metrics: {
        rm_pairs_per_s: o.batch / s, rm_tokens_per_s: realTokens / s, rm_step_s: s, rm_step_cpu_s: t.cpuMs / 1000,
        rm_matmul_share: profile.matmulShare, rm_peak_bytes: profile.peakBytes, rm_wasm_heap_bytes: wasmHeapBytes() ?? NaN,
      },
    };
  } finally {
    opt.dispose();
    model.dispose();
  }
}

/**
 * The four PPO models. Full weights: four separate models (actor and initial equal, critic and reward model equal,
 * as after SFT and RM). LoRA: the actor's adapter on a base the initial model reads with the adapter off, and the
 * critic's adapter on a base the reward model reads the same way, as `train_prompts --lora_rank` shares them.
 */
function ppoModels(config: ModelConfig, loraRank: number, frozen: PackedFormat | undefined): { m: ExperienceModels; dispose: () => void } {
  const owned: { dispose(): void }[] = [];
  const own = <T extends { dispose(): void }>(x: T): T => (owned.push(x), x);
  // With LoRA both bases are frozen (packed in `frozen`); with full weights only the initial and reward models.
  const actor = own(DecoderModel.fromConfig(config, 0, loraRank > 0 ? frozen : undefined));
  const criticBase = own(DecoderModel.fromConfig(config, 1, loraRank > 0 ? frozen : undefined));
  const criticHead = own(ValueHead.create(config.wordEmbedDim, 2));
  const rewardHead = own(ValueHead.create(config.wordEmbedDim, 3));
  let m: ExperienceModels;
  if (loraRank > 0) {
    const lora = { r: loraRank, alpha: 16, dropout: 0, targetModules: DEFAULT_LORA_TARGETS[config.modelType]! };
    actor.lora = LoraAdapter.create(actor.spec, lora, 4);
    criticBase.lora = LoraAdapter.create(criticBase.spec, lora, 5);
    owned.push(actor.lora, criticBase.lora);
    m = {
      actor, initial: actor, critic: new ValueModel(criticBase, criticHead, true), reward: new ValueModel(criticBase, rewardHead, false),
      rewardReduction: 'last',
    };
  } else {
    m = {
      actor, initial: own(DecoderModel.fromConfig(config, 0, frozen)), critic: new ValueModel(criticBase, criticHead),
      reward: new ValueModel(own(DecoderModel.fromConfig(config, 1, frozen)), rewardHead), rewardReduction: 'last',
    };
  }
  return { m, dispose: () => owned.forEach((x) => x.dispose()) };
}

/**
 * `ppo`: one experience batch of o.genBatch prompts of o.promptLen tokens, o.newTokens sampled tokens each (top-k 50,
 * no EOS so every row runs to the end), then PPO minibatch updates of o.trainBatch rollouts.
 */
export async function ppoSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(4);
  const loraRank = o.loraRank ?? 0;
  const { m, dispose } = ppoModels(config, loraRank, frozenFormat(o));
  const actorOpt = benchOptimization(trainableParams(m.actor), PPO_DEFAULTS.lr);
  const criticOpt = benchOptimization(criticParams(m.critic), PPO_DEFAULTS.criticLr);
  const trainBatch = Math.min(o.trainBatch ?? PPO_DEFAULTS.trainBatchSize, o.genBatch);
  const modelsNote = (loraRank > 0 ? `LoRA r=${loraRank} (initial and reward models share the bases)` : 'full weights, four models') + `; ${frozenNote(m.initial)} per frozen model`;
  try {
    const prompts = randomIds(rng, o.genBatch, o.promptLen, config.vocabSize);
    const mask = prompts.map((r) => r.map(() => 1));
    const expOpts = (maxNewTokens: number) => ({
      maxNewTokens, temperature: 1, topK: 50, topP: 1, eosTokenId: null, padTokenId: 0, rng,
      klCoef: PPO_DEFAULTS.klCoef, klEstimator: PPO_DEFAULTS.klEstimator, rewardClip: PPO_DEFAULTS.rewardClip, gamma: PPO_DEFAULTS.gamma,
      lam: PPO_DEFAULTS.lam, advantage: PPO_DEFAULTS.advantage, whitenAdvantages: true,
    });
    // 1. experience
    const gshape = `B=${o.genBatch} prompt=${o.promptLen} new=${o.newTokens}`;
    o.log(`experience ${gshape} (${modelsNote}) …`);
    makeExperience(m, prompts, mask, expOpts(2)); // warm-up: creates the kernels' operators once
    let peak = 0;
    const e = timeIt(() => makeExperience(m, prompts, mask, { ...expOpts(o.newTokens), onMemory: () => (peak = Math.max(peak, tf.memory().numBytes)) }));
    const newTokens = e.result.items.reduce((s, it) => s + it.answer.length, 0);
    const gen = e.result.stats.generateSeconds;
    const score = e.result.stats.scoreSeconds;

    // 2. PPO updates: minibatches of the buffer, actor step then critic step
    const buffer = new ReplayBuffer(0);
    buffer.add(e.result.items);
    const minibatches = [...buffer.minibatches(trainBatch, rng)];
    const T = minibatches[0]!.promptLength + minibatches[0]!.answerLength;
    const tshape = `B=${trainBatch} T=${T} (prompt ${minibatches[0]!.promptLength} + answer ${minibatches[0]!.answerLength})`;
    const update = (i: number) => ppoTrainStep(m, { actor: actorOpt, critic: criticOpt }, minibatches[i % minibatches.length]!, null, PPO_DEFAULTS, () => (peak = Math.max(peak, tf.memory().numBytes)));
    o.log(`PPO minibatch update ${tshape}: warm-up (profiled) …`);
    const profile = await profileCall(() => update(0));
    if (o.profileTop > 0) o.log(formatProfile(`profile of one PPO minibatch update (${tshape})`, profile, o.profileTop));
    const times: Timing[] = [];
    for (let i = 0; i < o.steps; i++) {
      times.push(timeIt(() => update(i + 1)));
      o.log(`  update ${i + 1}/${o.steps}: ${(times[i]!.wallMs / 1000).toFixed(2)} s`);
    }
    const t = medianTiming(times);
    const trainTokens = trainBatch * T;
    const ts = t.wallMs / 1000;
    peak = Math.max(peak, profile.peakBytes);
    const rows: Row[] = [
      { metric: 'parameters per model', value: paramCount(m.actor) / 1e6, unit: 'M', note: modelsNote },
      { metric: 'experience new tokens/s', value: newTokens / (e.wallMs / 1000), unit: 'tok/s', note: `${gshape}, top-k 50; rollout + scoring by 4 models` },
      { metric: 'generate new tokens/s', value: newTokens / gen, unit: 'tok/s', note: 'the rollout alone (KV cache, prefill included)' },
      { metric: 'experience time', value: e.wallMs / 1000, unit: 's', note: `generate ${gen.toFixed(2)} s + score ${score.toFixed(2)} s + GAE` },
      { metric: 'PPO train tokens/s', value: trainTokens / ts, unit: 'tok/s', note: `${tshape}; actor + critic fwd+bwd+AdamW` },
      { metric: 'PPO minibatch update', value: ts, unit: 's', note: `median wall of ${o.steps}; CPU ${(t.cpuMs / 1000).toFixed(2)} s` },
      { metric: 'PPO peak tensor memory', value: peak / MiB, unit: 'MiB', note: 'max tf.memory().numBytes, all phases' },
      ...heapRow(),
    ];
    return {
      rows, profile,
      metrics: {
        ppo_experience_tokens_per_s: newTokens / (e.wallMs / 1000), ppo_generate_tokens_per_s: newTokens / gen, ppo_experience_s: e.wallMs / 1000,
        ppo_generate_s: gen, ppo_score_s: score, ppo_train_tokens_per_s: trainTokens / ts, ppo_update_s: ts, ppo_update_cpu_s: t.cpuMs / 1000,
        ppo_peak_bytes: peak, ppo_wasm_heap_bytes: wasmHeapBytes() ?? NaN, ppo_lora_rank: loraRank,
      },
    };
  } finally {
    actorOpt.dispose();
    criticOpt.dispose();
    dispose();
  }
}
