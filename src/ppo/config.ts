/**
 * Everything a PPO run is configured by, grouped models / data / rollout / algorithm / optimisation / run. Field names
 * are the camelCase of ColossalChat's `train_prompts.py` flags (`--num_collect_steps` → numCollectSteps); the CLI
 * (src/cli/train_prompts.ts) maps flags onto this object and `resolvePpoConfig` fills defaults and validates it.
 *
 * Vocabulary, as ColossalChat uses it: an *episode* collects `numCollectSteps` batches of `experienceBatchSize`
 * rollouts into the replay buffer, then makes `numUpdateSteps` passes (PPO epochs) over the buffer in minibatches of
 * `trainBatchSize`, then empties the buffer. One episode is one logged step.
 */
import type { NonFiniteOptions } from '../trainer/nonfinite_guard.js';
import type { KlEstimator } from './functional.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import type { ScheduleFields } from '../trainer/schedule_config.js';
import type { FrozenDtype } from '../models/ops/frozen_dtypes.js';
import { configChecks } from '../trainer/config_checks.js';

/** How advantages are computed: GAE over per-token rewards (default), or ColossalChat's sequence-level R − V. */
export type AdvantageKind = 'gae' | 'coati';
/** How the ptx (pretraining LM) loss joins the policy loss: policy + c·ptx (default), or (1 − c)·policy + c·ptx. */
export type PtxMix = 'additive' | 'convex';

/**
 * With the shared loop controls and schedule flags. In train_prompts a "step" of the loop controls is an episode
 * (--max_steps caps the episodes, --logging_steps / --save_steps count them, --save_best ranks them by an episode
 * metric); the lr schedule alone counts optimizer steps (one per minibatch update).
 */
export interface PpoConfig extends LoopControlsConfig, ScheduleFields, NonFiniteOptions {
  // --- models ---
  /** The SFT model: the actor starts from it and the frozen initial (reference) model is it. HF dir or Hub id. */
  pretrain: string;
  /** Model family check for --pretrain (`gpt2|opt|bloom|llama`); read from config.json when omitted. */
  model?: string;
  /** Tokenizer directory (default: the --pretrain directory). */
  tokenizer?: string;
  /** The reward model directory (value head + `rlhf.reward_reduction` in config.json, as train_reward_model writes). */
  rmPath: string;
  /** Model family check for the reward model. */
  rmModel?: string;
  /** Where the critic starts (default: --rm_path, head included). Another directory gets a fresh value head unless it has one. */
  rmPretrain?: string;
  /**
   * The frozen reference (initial) model of the KL penalty when it is not --pretrain: the SFT model when the actor
   * starts from an earlier PPO policy (a second round of iterated RLHF), so the KL stays measured from the SFT model.
   * Full-weight actors only: under LoRA the reference is the actor's own base.
   */
  refPretrain?: string;

  // --- LoRA (PEFT meanings); with a rank, actor and initial model share one frozen base, and so do critic and RM ---
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  /** PEFT target modules (default per model family), or 'all-linear'. */
  loraTarget?: string[] | string;
  /** Save the actor (and critic) with the adapter merged into full weights instead of as a PEFT adapter. */
  mergeLoraWeights: boolean;
  /**
   * --frozen_dtype: the initial model and the reward model (and, with LoRA, the actor's and critic's frozen bases)
   * held packed in bf16/int8/nf4; the trained weights stay float32.
   */
  frozenDtype: FrozenDtype;

  // --- data ---
  /** Prompts: CSV (a `prompt` column, e.g. awesome-chatgpt-prompts.csv), JSON or JSONL. */
  promptDataset: string;
  /** Field holding the prompt (detected when omitted: prompt, instruction, text, query, question). */
  promptColumn?: string;
  /** Template name (src/data/templates); default: the one recorded in the SFT directory, else `alpaca`. */
  promptTemplate?: string;
  /** ptx data: any SFT dataset format (files), used for an LM loss on the actor. Empty: no ptx loss. */
  pretrainDataset: string[];
  /** Use at most this many prompts / ptx records (0 or absent: all). */
  maxDatasetsSize?: number;
  /** Skip malformed records (counted in the log) instead of stopping at the first. */
  skipBadRecords: boolean;

  // --- rollout ---
  numEpisodes: number;
  /** Rollout batches collected per episode before updating. */
  numCollectSteps: number;
  /** Passes over the replay buffer per episode (PPO epochs). */
  numUpdateSteps: number;
  experienceBatchSize: number;
  /** Minibatch size of the PPO update. */
  trainBatchSize: number;
  ptxBatchSize: number;
  /** Prompts longer than this (tokens) lose their beginning. */
  maxInputLen: number;
  /** Prompt + answer tokens at most; the answer gets what the (padded) prompt leaves. */
  maxSeqLen: number;
  /** Answer tokens at most; overrides maxSeqLen when set. */
  maxNewTokens?: number;
  /** Sampling: 0 disables top-k; 1 disables top-p. Defaults sample the policy's own distribution, as PPO assumes. */
  topK: number;
  topP: number;
  temperature: number;

  // --- algorithm ---
  /** Initial β of the per-token KL penalty. */
  klCoef: number;
  /** Target KL (nats per answer, summed over tokens): β adapts towards it when set (Ziegler et al. 2019). */
  klTarget: number | null;
  /** Horizon of the adaptive KL controller, in sequences. */
  klHorizon: number;
  /** KL estimator in the reward penalty: k1 = logπ − logπ_ref (TRL's default) or k3 = (r − 1) − log r, r = π_ref/π. */
  klEstimator: KlEstimator;
  /** Weight of the ptx loss. */
  ptxCoef: number;
  ptxMix: PtxMix;
  /** PPO ratio clip ε. */
  clipEps: number;
  /** Value clip: the critic may move this far from its rollout values without the clipped penalty. */
  valueClip: number;
  gamma: number;
  lam: number;
  /** The reward-model score is clipped to [−c, c]; 0 disables clipping. */
  rewardClip: number;
  /** Whiten advantages over the batch (masked mean 0, variance 1). */
  whitenAdvantages: boolean;
  advantage: AdvantageKind;

  // --- optimisation: one AdamW for the actor, one for the critic; constant learning rates ---
  lr: number;
  criticLr: number;
  weightDecay: number;
  /** Max global gradient norm per optimizer; 0 disables clipping. */
  gradClip: number;

  // --- run ---
  /** Output: the actor as an HF directory here, the critic (with its value head) in `<savePath>/critic`. */
  savePath: string;
  /** Also write `<savePath>/checkpoint-<episode>` every this many episodes (0: only at the end). */
  saveSteps: number;
  /** Write optimizer state with checkpoints (needed for an exact --resume). */
  needOptimCkpt: boolean;
  /** A checkpoint directory written by this command to continue from. */
  resume?: string;
  /** Metrics (metrics.jsonl + TensorBoard) go here; default `<savePath>/logs`. */
  logDir?: string;
  /** Log sample generations every this many episodes (0: never). */
  sampleEvery: number;
  seed: number;
  backend: string;
  strategy: string;
}

/** The fields a caller must give; the rest default. */
export type PpoConfigInput = Pick<PpoConfig, 'pretrain' | 'rmPath' | 'promptDataset' | 'savePath'> & Partial<PpoConfig>;

/** ColossalChat's train_prompts.py defaults where it has them (episodes, batch sizes, lengths, coefficients). */
export const PPO_DEFAULTS: Omit<PpoConfig, 'pretrain' | 'rmPath' | 'promptDataset' | 'savePath'> = {
  loraRank: 0,
  loraAlpha: 16,
  loraDropout: 0,
  mergeLoraWeights: false,
  frozenDtype: 'float32',
  pretrainDataset: [],
  skipBadRecords: false,
  numEpisodes: 10,
  numCollectSteps: 10,
  numUpdateSteps: 5,
  experienceBatchSize: 8,
  trainBatchSize: 8,
  ptxBatchSize: 1,
  maxInputLen: 96,
  maxSeqLen: 128,
  topK: 0,
  topP: 1,
  temperature: 1,
  klCoef: 0.1,
  klTarget: null,
  klHorizon: 10000,
  klEstimator: 'k1',
  ptxCoef: 0.9,
  ptxMix: 'additive',
  clipEps: 0.2,
  valueClip: 0.2,
  gamma: 1.0,
  lam: 0.95,
  rewardClip: 10,
  whitenAdvantages: true,
  advantage: 'gae',
  lr: 9e-6,
  criticLr: 9e-6,
  weightDecay: 0,
  gradClip: 1.0,
  saveSteps: 0,
  needOptimCkpt: false,
  evalSteps: 0,
  loggingSteps: 1,
  saveTotalLimit: 0,
  saveBest: false,
  metricForBest: 'reward/mean',
  lrScheduler: 'constant',
  warmupRatio: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  sampleEvery: 1,
  seed: 42,
  backend: 'auto',
  strategy: 'naive',
};

/**
 * Old ColossalChat flag names, as its published recipes spell them. `--max_timesteps T` with `--update_timesteps U`
 * meant T rollouts per episode with an update every U: the same schedule is numCollectSteps = U and T/U times as many
 * episodes (see `applyLegacyTimesteps`).
 */
export const LEGACY_FLAGS = {
  '--prompt_path': '--prompt_dataset',
  '--update_timesteps': '--num_collect_steps',
  '--max_epochs': '--num_update_steps',
  '--max_timesteps': '--num_collect_steps (× episodes, see above)',
} as const;

export interface LegacyTimesteps {
  maxTimesteps?: number;
  updateTimesteps?: number;
  maxEpochs?: number;
}

/** Folds old-style timestep flags into the new fields; explicit new flags win where both are given. */
export function applyLegacyTimesteps(cfg: PpoConfigInput, legacy: LegacyTimesteps): PpoConfigInput {
  const out = { ...cfg };
  if (legacy.maxEpochs !== undefined && cfg.numUpdateSteps === undefined) out.numUpdateSteps = legacy.maxEpochs;
  const collect = cfg.numCollectSteps ?? legacy.updateTimesteps;
  if (legacy.maxTimesteps !== undefined && cfg.numCollectSteps === undefined) {
    const every = collect ?? legacy.maxTimesteps;
    out.numCollectSteps = every;
    out.numEpisodes = (cfg.numEpisodes ?? PPO_DEFAULTS.numEpisodes) * Math.max(1, Math.floor(legacy.maxTimesteps / every));
  } else if (collect !== undefined) {
    out.numCollectSteps = collect;
  }
  return out;
}

/** Defaults filled in and every field checked, with errors that say which flag to change. */
export function resolvePpoConfig(input: PpoConfigInput): PpoConfig {
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as PpoConfigInput;
  const c: PpoConfig = { ...PPO_DEFAULTS, ...given };
  const fail = (flag: string, msg: string): never => {
    throw new Error(`${flag}: ${msg}`);
  };
  for (const [flag, key] of [['--pretrain', 'pretrain'], ['--rm_path', 'rmPath'], ['--prompt_dataset', 'promptDataset'], ['--save_path', 'savePath']] as const) {
    if (!c[key]) fail(flag, 'is required');
  }
  const posInt = (flag: string, v: number) => (Number.isInteger(v) && v >= 1) || fail(flag, `must be an integer ≥ 1, got ${v}`);
  const nonNegInt = (flag: string, v: number) => (Number.isInteger(v) && v >= 0) || fail(flag, `must be an integer ≥ 0, got ${v}`);
  const inRange = (flag: string, v: number, lo: number, hi: number) => (Number.isFinite(v) && v >= lo && v <= hi) || fail(flag, `must be in [${lo}, ${hi}], got ${v}`);
  if (c.refPretrain && c.loraRank > 0) fail('--ref_pretrain', 'with --lora_rank the reference model is the actor\'s base with the adapter off; give the policy to start from as a merged (full-weight) --pretrain and drop --lora_rank, or drop --ref_pretrain');
  posInt('--num_episodes', c.numEpisodes);
  posInt('--num_collect_steps', c.numCollectSteps);
  posInt('--num_update_steps', c.numUpdateSteps);
  posInt('--experience_batch_size', c.experienceBatchSize);
  posInt('--train_batch_size', c.trainBatchSize);
  posInt('--ptx_batch_size', c.ptxBatchSize);
  posInt('--max_input_len', c.maxInputLen);
  posInt('--max_seq_len', c.maxSeqLen);
  if (c.maxNewTokens !== undefined) posInt('--max_new_tokens', c.maxNewTokens);
  else if (c.maxSeqLen <= c.maxInputLen) fail('--max_seq_len', `(${c.maxSeqLen}) must exceed --max_input_len (${c.maxInputLen}) to leave room for an answer, or set --max_new_tokens`);
  nonNegInt('--top_k', c.topK);
  inRange('--top_p', c.topP, 1e-6, 1);
  inRange('--temperature', c.temperature, 1e-6, Infinity);
  inRange('--kl_coef', c.klCoef, 0, Infinity);
  if (c.klTarget !== null) inRange('--kl_target', c.klTarget, 1e-9, Infinity);
  inRange('--kl_horizon', c.klHorizon, 1, Infinity);
  if (c.klEstimator !== 'k1' && c.klEstimator !== 'k3') fail('--kl_estimator', `must be k1 or k3, got ${c.klEstimator}`);
  inRange('--ptx_coef', c.ptxCoef, 0, c.ptxMix === 'convex' ? 1 : Infinity);
  if (c.ptxMix !== 'additive' && c.ptxMix !== 'convex') fail('--ptx_mix', `must be additive or convex, got ${c.ptxMix}`);
  inRange('--clip_eps', c.clipEps, 0, 1);
  inRange('--value_clip', c.valueClip, 0, Infinity);
  inRange('--gamma', c.gamma, 0, 1);
  inRange('--lam', c.lam, 0, 1);
  inRange('--reward_clip', c.rewardClip, 0, Infinity);
  if (c.advantage !== 'gae' && c.advantage !== 'coati') fail('--advantage', `must be gae or coati, got ${c.advantage}`);
  inRange('--lr', c.lr, 0, Infinity);
  inRange('--critic_lr', c.criticLr, 0, Infinity);
  inRange('--weight_decay', c.weightDecay, 0, Infinity);
  inRange('--grad_clip', c.gradClip, 0, Infinity);
  nonNegInt('--lora_rank', c.loraRank);
  inRange('--lora_dropout', c.loraDropout, 0, 1);
  configChecks().frozenDtype(c);
  nonNegInt('--save_steps', c.saveSteps);
  if (c.evalSteps > 0) {
    fail('--eval_steps', 'train_prompts has no held-out evaluation: its episode metrics (reward/mean, objective/kl, ...) are logged every ' +
      '--logging_steps episodes, and --save_best keeps the best episode by --metric_for_best (default reward/mean)');
  }
  nonNegInt('--sample_every', c.sampleEvery);
  if (c.maxDatasetsSize !== undefined) nonNegInt('--max_datasets_size', c.maxDatasetsSize);
  return c;
}

/** Answer tokens for a prompt batch padded to `promptLen`. */
export function newTokensFor(c: PpoConfig, promptLen: number): number {
  return c.maxNewTokens ?? Math.max(1, c.maxSeqLen - promptLen);
}

/** Longest sequence a rollout can make (for the model's position limit). */
export function longestSequence(c: PpoConfig): number {
  return c.maxNewTokens !== undefined ? c.maxInputLen + c.maxNewTokens : c.maxSeqLen;
}
