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
import { configChecks, definedFields } from '../trainer/config_checks.js';
import { VALUE_REDUCTIONS, type ValueReduction } from '../models/value_model.js';
import type { LoraFields, OptimizerFields, RunFields } from '../trainer/stage_fields.js';

/** How a sequence's per-token values become one reward (src/models/value_model.ts defines each). */
export const REWARD_REDUCTIONS = VALUE_REDUCTIONS;
export type RewardReduction = ValueReduction;

/** With the shared loop controls (--max_steps, --eval_steps, --save_best, ...) and schedule flags. */
export interface RewardConfig extends LoopControlsConfig, ScheduleFields, NonFiniteOptions, LoraFields, OptimizerFields, RunFields {
  // --- model ---
  /** HF model directory (usually an SFT output dir, full or LoRA adapter) or Hub id. */
  pretrain: string;
  /** Expected model family; checked against config.json when given. */
  modelType?: string;
  /** Tokenizer directory (default: the --pretrain directory). */
  tokenizer?: string;
  /** PEFT target modules (default per model family), or 'all-linear'. */
  loraTargets?: string[] | string;
  /**
   * 'last' (default): the value at the last real token (last 1 of the attention mask), i.e. after the EOS that ends
   * the answer, the one position that has read the whole prompt and answer. 'mean': mean over real tokens. 'sum': their sum.
   * 'answer_sum' / 'answer_mean': the sum / mean over the answer's tokens only (the prompt's are left out).
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
  /**
   * Keep each prompt's pairs together in the shuffled order (InstructGPT's batching of a prompt's ranked answers):
   * a batch scores each distinct answer once, so k ranked answers cost k sequences, not two per pair.
   */
  groupByPrompt: boolean;
  /** Pairs per micro-batch (each pair is two sequences). */
  batchSize: number;
  maxEpochs: number;
  warmupRatio: number;
  accumulationSteps: number;
  /** Pairs per optimizer step over all ranks; accumulation is derived from it (src/trainer/batch_size.ts). */
  globalBatchSize?: number;
  /** Pairs per forward/backward on one rank, with globalBatchSize (default batchSize). */
  microBatchSize?: number;
  // --- run: RunFields ---
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
  groupByPrompt: false,
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
  const c = { ...REWARD_DEFAULTS, ...definedFields(input) } as RewardConfig;
  const check = configChecks();
  check.required([['--pretrain', c.pretrain], ['--dataset', c.dataset], ['--save_path', c.savePath]]);
  check.oneOf('--loss_fn', c.lossFn, PAIRWISE_LOSSES);
  check.oneOf('--reward_reduction', c.rewardReduction, REWARD_REDUCTIONS);
  check.oneOf('--prompt_template', c.promptTemplate, PROMPT_TEMPLATE_CHOICES);
  check.oneOf('--backend', c.backend, BACKENDS);
  check.oneOf('--strategy', c.strategy, STRATEGIES);
  if (c.modelType !== undefined) check.oneOf('--model', c.modelType, SUPPORTED_MODEL_TYPES);
  check.common(c);
  check.intAtLeast('--max_len', c.maxLen, 2); // at least one prompt token and one answer token
  check.intAtLeast('--batch_size', c.batchSize, 1);
  check.intAtLeast('--max_epochs', c.maxEpochs, 1);
  check.intAtLeast('--accumulation_steps', c.accumulationSteps, 1);
  check.intAtLeast('--logging_steps', c.loggingSteps, 1);
  check.inRange('--warmup_ratio', c.warmupRatio, 0, 1);
  check.inRange('--eval_ratio', c.evalRatio, 0, 1, { hiOpen: true });
  check.inRange('--lora_alpha', c.loraAlpha, 0, Infinity);
  if (c.mergeLoraWeights && c.loraRank === 0) check.fail('--merge_lora_weights', 'needs --lora_rank > 0 (without LoRA the full weights are saved anyway)');
  check.frozenDtype(c, true);
  return c;
}
