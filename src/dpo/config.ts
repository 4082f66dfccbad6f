/**
 * Settings of a direct preference-optimization run (DPO and its relatives), grouped model / data / loss / training /
 * run. Field names are camelCase versions of the flags, which follow TRL's DPOConfig/KTOConfig names (`--beta`,
 * `--loss_type`, `--label_smoothing`, `--precompute_ref_log_probs`, …) and ColossalChat's for the rest; defaults are
 * TRL's unless noted. Derived numbers (steps, warm-up steps) are computed by the trainer, never written back here.
 */
import { AUTO_TEMPLATE, PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { BACKENDS } from '../engine/backend.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { STRATEGIES } from '../strategies/strategy.js';
import { configChecks, definedFields } from '../trainer/config_checks.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import type { NonFiniteOptions } from '../trainer/nonfinite_guard.js';
import type { ScheduleFields } from '../trainer/schedule_config.js';
import type { LoraFields, OptimizerFields, RunFields } from '../trainer/stage_fields.js';
import { DPO_LOSS_DEFAULTS, DPO_LOSS_TYPES, type DpoLossParams, type DpoLossType } from './losses.js';

/** With the shared loop controls (--max_steps, --eval_steps, --logging_steps, --save_best, ...) and schedule flags. */
export interface DpoConfig extends DpoLossParams, LoopControlsConfig, ScheduleFields, NonFiniteOptions, LoraFields, OptimizerFields, RunFields {
  // --- model ---
  /** The policy's start: an HF model directory (usually an SFT output, full or LoRA adapter) or Hub id. */
  pretrain: string;
  /** The frozen reference (default: the --pretrain model; with LoRA, the same base with the adapter off). */
  refModel?: string;
  modelType?: string;
  tokenizer?: string;
  loraTargets?: string[] | string;

  // --- data ---
  /** Preference pairs (or, for kto, unpaired labelled completions); any reader's file, shard folder or DatasetDict. */
  dataset: string;
  /** Held-out data; default: a DatasetDict's `test` split, else `evalRatio` of `dataset`. */
  evalDataset?: string;
  evalRatio: number;
  /** Tokens per sequence (prompt + completion + EOS). */
  maxLen: number;
  maxDatasetsSize: number;
  /** Small run: 64 training and 32 evaluation pairs. */
  test: boolean;
  /**
   * A built-in template, `chat_template` (the model's own), or `auto` (default): the template the --pretrain model
   * was trained with, else its tokenizer's chat template, else alpaca (as the policy stages and inference).
   */
  promptTemplate: string;
  skipBadRecords: boolean;

  // --- loss (beta, labelSmoothing, simpoGamma, orpoLambda, desirableWeight, undesirableWeight from DpoLossParams) ---
  lossType: DpoLossType;
  /** Score the data with the reference once before training and free it (TRL's precompute_ref_log_probs). */
  precomputeRefLogProbs: boolean;

  // --- training ---
  /** Pairs (kto: examples) per micro-batch. */
  batchSize: number;
  maxEpochs: number;
  warmupRatio: number;
  accumulationSteps: number;
  /** Pairs per optimizer step over all ranks; accumulation is derived from it (src/trainer/batch_size.ts). */
  globalBatchSize?: number;
  /** Pairs per forward/backward on one rank, with globalBatchSize (default batchSize). */
  microBatchSize?: number;

  // --- run (evalSteps 0: evaluate at each epoch's end) ---
  /** Old name of loggingSteps (`--log_steps`); loggingSteps wins when both are given. */
  logSteps?: number;
}

/** What --save_best ranks by default: TRL's eval accuracy of the implicit reward (chosen above rejected). */
export const DPO_BEST_METRIC = 'eval/rewards/accuracies';

/** The keys a held-out evaluation logs for a loss type (kto has no accuracy: its examples are unpaired). */
export function dpoEvalMetrics(lossType: DpoLossType): string[] {
  const keys = lossType === 'kto'
    ? ['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'objective/kl']
    : ['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'logits/chosen', 'logits/rejected',
      ...(lossType === 'orpo' ? ['loss/nll', 'loss/log_odds_ratio'] : [])];
  return keys.map((k) => `eval/${k}`);
}

/** --metric_for_best when not given: the accuracy for pair losses, the loss for kto. */
export function defaultDpoBestMetric(lossType: DpoLossType): string {
  return lossType === 'kto' ? 'eval/loss' : DPO_BEST_METRIC;
}

export const DPO_DEFAULTS: Omit<DpoConfig, 'pretrain' | 'dataset' | 'savePath'> = {
  ...DPO_LOSS_DEFAULTS,
  loraRank: 0,
  loraAlpha: 16,
  loraDropout: 0,
  mergeLoraWeights: false,
  evalRatio: 0.1, // not TRL's (it takes a separate split); a small held-out share by default, as train_reward_model
  maxLen: 512,
  maxDatasetsSize: 0,
  test: false,
  promptTemplate: AUTO_TEMPLATE,
  skipBadRecords: false,
  lossType: 'sigmoid',
  precomputeRefLogProbs: false,
  batchSize: 4,
  maxEpochs: 1,
  lr: 1e-6,
  weightDecay: 0,
  warmupRatio: 0.03,
  gradClip: 1.0,
  accumulationSteps: 1,
  seed: 42,
  saveSteps: 0,
  evalSteps: 0,
  needOptimCkpt: false,
  loggingSteps: 10,
  saveTotalLimit: 0,
  saveBest: false,
  lrScheduler: 'cosine',
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  backend: 'auto',
  strategy: 'naive',
};

export const TEST_SUBSET = { train: 64, eval: 32 } as const;

export type DpoConfigInput = Partial<DpoConfig> & Pick<DpoConfig, 'pretrain' | 'dataset' | 'savePath'>;

/** Fills defaults and checks every field; errors name the flag and say what is allowed. */
export function resolveDpoConfig(input: DpoConfigInput): DpoConfig {
  const given = definedFields(input);
  // --log_steps (the old name) stands in for --logging_steps when only it is given
  if (given.loggingSteps === undefined && given.logSteps !== undefined) given.loggingSteps = given.logSteps;
  const c = { ...DPO_DEFAULTS, ...given } as DpoConfig;
  const check = configChecks();
  check.required([['--pretrain', c.pretrain], ['--dataset', c.dataset], ['--save_path', c.savePath]]);
  check.oneOf('--loss_type', c.lossType, DPO_LOSS_TYPES);
  check.oneOf('--prompt_template', c.promptTemplate, PROMPT_TEMPLATE_CHOICES);
  check.oneOf('--backend', c.backend, BACKENDS);
  check.oneOf('--strategy', c.strategy, STRATEGIES);
  if (c.modelType !== undefined) check.oneOf('--model', c.modelType, SUPPORTED_MODEL_TYPES);
  check.common(c);
  check.intAtLeast('--max_len', c.maxLen, 2);
  check.intAtLeast('--batch_size', c.batchSize, 1);
  check.intAtLeast('--max_epochs', c.maxEpochs, 1);
  check.intAtLeast('--accumulation_steps', c.accumulationSteps, 1);
  check.intAtLeast('--logging_steps', c.loggingSteps, 1);
  check.inRange('--beta', c.beta, 0, Infinity, { loOpen: true });
  check.inRange('--label_smoothing', c.labelSmoothing, 0, 0.5, { hiOpen: true });
  for (const [flag, v] of [['--simpo_gamma', c.simpoGamma], ['--orpo_lambda', c.orpoLambda], ['--desirable_weight', c.desirableWeight], ['--undesirable_weight', c.undesirableWeight], ['--lora_alpha', c.loraAlpha]] as const) {
    check.inRange(flag, v, 0, Infinity);
  }
  check.inRange('--warmup_ratio', c.warmupRatio, 0, 1);
  check.inRange('--eval_ratio', c.evalRatio, 0, 1, { hiOpen: true });
  if (c.labelSmoothing > 0 && !['sigmoid', 'robust', 'simpo'].includes(c.lossType)) {
    check.fail('--label_smoothing', `applies to the sigmoid (cDPO), robust and simpo losses, not ${c.lossType}`);
  }
  if (c.lossType === 'kto' && c.batchSize < 2) {
    check.fail('--batch_size', "kto estimates its KL baseline from mismatched prompt/completion pairs within a micro-batch: use --batch_size 2 or more (as TRL's KTOTrainer requires)");
  }
  if (c.mergeLoraWeights && c.loraRank === 0) check.fail('--merge_lora_weights', 'needs --lora_rank > 0 (without LoRA the full weights are saved anyway)');
  check.frozenDtype(c);
  return c;
}
