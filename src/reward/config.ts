/**
 * Settings of a reward-model run, grouped model / data / training / run. Field names are camelCase versions of
 * ColossalChat's `train_reward_model.py` flags (`--max_len` -> `maxLen`); defaults are that script's unless noted.
 * Derived numbers (steps per epoch, warm-up steps) are computed by the trainer, never written back here.
 */
import type { NonFiniteOptions } from '../trainer/nonfinite_guard.js';
import { AUTO_TEMPLATE, PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { BACKENDS } from '../engine/backend.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { STRATEGIES } from '../strategies/strategy.js';
import { PAIRWISE_LOSSES, type PairwiseLossName } from './losses.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import type { ScheduleFields } from '../trainer/schedule_config.js';
import { FROZEN_DTYPES, type FrozenDtype } from '../models/ops/frozen_dtypes.js';

/** How a sequence's per-token values become one reward. */
export const REWARD_REDUCTIONS = ['last', 'mean'] as const;
export type RewardReduction = (typeof REWARD_REDUCTIONS)[number];

/** With the shared loop controls (--max_steps, --eval_steps, --save_best, ...) and schedule flags. */
export interface RewardConfig extends LoopControlsConfig, ScheduleFields, NonFiniteOptions {
  // --- model ---
  /** HF model directory (usually an SFT output dir, full or LoRA adapter) or Hub id. */
  pretrain: string;
  /** Expected model family; checked against config.json when given. */
  modelType?: string;
  /** Tokenizer directory (default: the --pretrain directory). */
  tokenizer?: string;
  /** LoRA rank; 0 trains every weight. */
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  /** PEFT target modules (default per model family), or 'all-linear'. */
  loraTargets?: string[] | string;
  /** With LoRA: save full weights with the adapter merged (true) or a PEFT adapter naming its base (false). */
  mergeLoraWeights: boolean;
  /** --frozen_dtype: the base under the LoRA adapter held packed (bf16, int8, nf4); default float32. */
  frozenDtype?: FrozenDtype;
  /**
   * 'last' (default): the value at the last real token (last 1 of the attention mask), i.e. after the EOS that ends
   * the answer, the one position that has read the whole prompt and answer. 'mean': mean over real tokens.
   */
  rewardReduction: RewardReduction;

  // --- data ---
  /** Preference file (hh-rlhf, rm-static or ShareGPT-style; JSON/JSONL(.gz)/CSV/Arrow/save_to_disk dir). */
  dataset: string;
  /** Held-out pairs; when absent, `evalRatio` of `dataset` is held out. */
  evalDataset?: string;
  /** Share of `dataset` held out for evaluation when there is no `evalDataset` (0: no evaluation). */
  evalRatio: number;
  /** Tokens per sequence (prompt + answer + EOS). */
  maxLen: number;
  /** Read at most this many records of each file (0: all). */
  maxDatasetsSize: number;
  /** Small run: 64 training and 32 evaluation pairs. */
  test: boolean;
  /**
   * Prompt template: a built-in one, `chat_template` (the model's own), or `auto` (default): the template --pretrain was
   * trained with, else its chat template, else human_assistant (hh-rlhf's own format).
   */
  promptTemplate: string;
  /** Skip malformed records (counted and reported) instead of failing on the first. */
  skipBadRecords: boolean;

  // --- training ---
  lossFn: PairwiseLossName;
  /** Pairs per micro-batch (each pair is two sequences). */
  batchSize: number;
  maxEpochs: number;
  lr: number;
  weightDecay: number;
  warmupRatio: number;
  /** Max global gradient norm (0: no clipping). */
  gradClip: number;
  accumulationSteps: number;
  /** Pairs per optimizer step over all ranks; accumulation is derived from it (src/trainer/batch_size.ts). */
  globalBatchSize?: number;
  /** Pairs per forward/backward on one rank, with globalBatchSize (default batchSize). */
  microBatchSize?: number;
  seed: number;

  // --- run ---
  savePath: string;
  /** Also write <savePath>/checkpoint-<step> every n optimizer steps (0: only at the end). */
  saveSteps: number;
  /** Write optimizer state with checkpoints (needed for an exact --resume). */
  needOptimCkpt: boolean;
  /** Continue from a checkpoint directory this command wrote. */
  resume?: string;
  /** metrics.jsonl + TensorBoard events (default <savePath>/logs). */
  logDir?: string;
  backend: string;
  strategy: string;
}

/** Defaults for everything but the three paths a run needs. */
export const REWARD_DEFAULTS: Omit<RewardConfig, 'pretrain' | 'dataset' | 'savePath'> = {
  loraRank: 0,
  loraAlpha: 16,
  loraDropout: 0,
  mergeLoraWeights: false,
  rewardReduction: 'last',
  evalRatio: 0.1, // not in ColossalChat (it evaluates on a separate split); a small held-out share by default
  maxLen: 512,
  maxDatasetsSize: 0,
  test: false,
  promptTemplate: AUTO_TEMPLATE,
  skipBadRecords: false,
  lossFn: 'log_sig',
  batchSize: 1,
  maxEpochs: 1,
  lr: 5e-6,
  weightDecay: 0,
  warmupRatio: 0.03,
  gradClip: 1.0,
  accumulationSteps: 1,
  seed: 42,
  saveSteps: 0,
  needOptimCkpt: false,
  loggingSteps: 10,
  evalSteps: 0,
  saveTotalLimit: 0,
  saveBest: false,
  lrScheduler: 'cosine',
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  backend: 'auto',
  strategy: 'naive',
};

/** Sizes of the `test` subset. */
export const TEST_SUBSET = { train: 64, eval: 32 } as const;

export type RewardConfigInput = Partial<RewardConfig> & Pick<RewardConfig, 'pretrain' | 'dataset' | 'savePath'>;

/** Fills defaults and checks every field; errors name the flag and say what is allowed. */
export function resolveRewardConfig(input: RewardConfigInput): RewardConfig {
  const c = { ...REWARD_DEFAULTS, ...stripUndefined(input) } as RewardConfig;
  const fail = (flag: string, msg: string): never => {
    throw new Error(`--${flag}: ${msg}`);
  };
  for (const [flag, v] of [['pretrain', c.pretrain], ['dataset', c.dataset], ['save_path', c.savePath]] as const) {
    if (typeof v !== 'string' || v === '') fail(flag, 'is required');
  }
  const oneOf = (flag: string, v: string, allowed: readonly string[]) => {
    if (!allowed.includes(v)) fail(flag, `"${v}" is not one of ${allowed.join(', ')}`);
  };
  oneOf('loss_fn', c.lossFn, PAIRWISE_LOSSES);
  oneOf('reward_reduction', c.rewardReduction, REWARD_REDUCTIONS);
  oneOf('prompt_template', c.promptTemplate, PROMPT_TEMPLATE_CHOICES);
  oneOf('backend', c.backend, BACKENDS);
  oneOf('strategy', c.strategy, STRATEGIES);
  if (c.modelType !== undefined) oneOf('model', c.modelType, SUPPORTED_MODEL_TYPES);
  const intAtLeast = (flag: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) fail(flag, `must be an integer >= ${min}, got ${v}`);
  };
  intAtLeast('max_len', c.maxLen, 2); // at least one prompt token and one answer token
  intAtLeast('batch_size', c.batchSize, 1);
  intAtLeast('max_epochs', c.maxEpochs, 1);
  intAtLeast('accumulation_steps', c.accumulationSteps, 1);
  intAtLeast('max_datasets_size', c.maxDatasetsSize, 0);
  intAtLeast('lora_rank', c.loraRank, 0);
  intAtLeast('save_steps', c.saveSteps, 0);
  intAtLeast('logging_steps', c.loggingSteps, 1);
  intAtLeast('seed', c.seed, 0);
  const inRange = (flag: string, v: number, lo: number, hi: number, hiOpen = false) => {
    if (!Number.isFinite(v) || v < lo || (hiOpen ? v >= hi : v > hi)) fail(flag, `must be in [${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
  };
  inRange('lr', c.lr, 0, Infinity);
  inRange('weight_decay', c.weightDecay, 0, Infinity);
  inRange('warmup_ratio', c.warmupRatio, 0, 1);
  inRange('grad_clip', c.gradClip, 0, Infinity);
  inRange('eval_ratio', c.evalRatio, 0, 1, true);
  inRange('lora_alpha', c.loraAlpha, 0, Infinity);
  inRange('lora_dropout', c.loraDropout, 0, 1, true);
  if (c.mergeLoraWeights && c.loraRank === 0) fail('merge_lora_weights', 'needs --lora_rank > 0 (without LoRA the full weights are saved anyway)');
  if (c.frozenDtype !== undefined && c.frozenDtype !== 'float32') {
    if (!(FROZEN_DTYPES as readonly string[]).includes(c.frozenDtype)) fail('frozen_dtype', `must be one of ${FROZEN_DTYPES.join(', ')}, got ${c.frozenDtype}`);
    if (c.loraRank === 0) fail('frozen_dtype', `${c.frozenDtype} packs the frozen base under a LoRA adapter: add --lora_rank R (a full-weight reward model trains every weight in float32)`);
    if (c.mergeLoraWeights) fail('merge_lora_weights', `cannot merge into a base held in ${c.frozenDtype} (--frozen_dtype): save the adapter, then merge it into the float32 checkpoint with convert`);
  }
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
