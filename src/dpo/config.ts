/**
 * Settings of a direct preference-optimization run (DPO and its relatives), grouped model / data / loss / training /
 * run. Field names are camelCase versions of the flags, which follow TRL's DPOConfig/KTOConfig names (`--beta`,
 * `--loss_type`, `--label_smoothing`, `--precompute_ref_log_probs`, …) and ColossalChat's for the rest; defaults are
 * TRL's unless noted. Derived numbers (steps, warm-up steps) are computed by the trainer, never written back here.
 */
import { TEMPLATE_NAMES } from '../data/templates/index.js';
import { BACKENDS } from '../engine/backend.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { STRATEGIES } from '../strategies/strategy.js';
import { FROZEN_DTYPES, type FrozenDtype } from '../models/ops/frozen_dtypes.js';
import { DPO_LOSS_DEFAULTS, DPO_LOSS_TYPES, type DpoLossParams, type DpoLossType } from './losses.js';

export interface DpoConfig extends DpoLossParams {
  // --- model ---
  /** The policy's start: an HF model directory (usually an SFT output, full or LoRA adapter) or Hub id. */
  pretrain: string;
  /** The frozen reference (default: the --pretrain model; with LoRA, the same base with the adapter off). */
  refModel?: string;
  modelType?: string;
  tokenizer?: string;
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  loraTargets?: string[] | string;
  mergeLoraWeights: boolean;
  /** --frozen_dtype: the reference (and, with LoRA, the policy's frozen base) held packed in bf16/int8/nf4. */
  frozenDtype?: FrozenDtype;

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
  lr: number;
  weightDecay: number;
  warmupRatio: number;
  gradClip: number;
  accumulationSteps: number;
  seed: number;

  // --- run ---
  savePath: string;
  saveSteps: number;
  /** Evaluate every n optimizer steps (0: at each epoch's end only). */
  evalSteps: number;
  needOptimCkpt: boolean;
  resume?: string;
  logDir?: string;
  logSteps: number;
  backend: string;
  strategy: string;
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
  promptTemplate: 'human_assistant',
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
  logSteps: 10,
  backend: 'auto',
  strategy: 'naive',
};

export const TEST_SUBSET = { train: 64, eval: 32 } as const;

export type DpoConfigInput = Partial<DpoConfig> & Pick<DpoConfig, 'pretrain' | 'dataset' | 'savePath'>;

/** Fills defaults and checks every field; errors name the flag and say what is allowed. */
export function resolveDpoConfig(input: DpoConfigInput): DpoConfig {
  const c = { ...DPO_DEFAULTS, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) } as DpoConfig;
  const fail = (flag: string, msg: string): never => {
    throw new Error(`--${flag}: ${msg}`);
  };
  for (const [flag, v] of [['pretrain', c.pretrain], ['dataset', c.dataset], ['save_path', c.savePath]] as const) {
    if (typeof v !== 'string' || v === '') fail(flag, 'is required');
  }
  const oneOf = (flag: string, v: string, allowed: readonly string[]) => {
    if (!allowed.includes(v)) fail(flag, `"${v}" is not one of ${allowed.join(', ')}`);
  };
  oneOf('loss_type', c.lossType, DPO_LOSS_TYPES);
  oneOf('prompt_template', c.promptTemplate, TEMPLATE_NAMES);
  oneOf('backend', c.backend, BACKENDS);
  oneOf('strategy', c.strategy, STRATEGIES);
  if (c.modelType !== undefined) oneOf('model', c.modelType, SUPPORTED_MODEL_TYPES);
  const intAtLeast = (flag: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) fail(flag, `must be an integer >= ${min}, got ${v}`);
  };
  intAtLeast('max_len', c.maxLen, 2);
  intAtLeast('batch_size', c.batchSize, 1);
  intAtLeast('max_epochs', c.maxEpochs, 1);
  intAtLeast('accumulation_steps', c.accumulationSteps, 1);
  intAtLeast('max_datasets_size', c.maxDatasetsSize, 0);
  intAtLeast('lora_rank', c.loraRank, 0);
  intAtLeast('save_steps', c.saveSteps, 0);
  intAtLeast('eval_steps', c.evalSteps, 0);
  intAtLeast('log_steps', c.logSteps, 1);
  intAtLeast('seed', c.seed, 0);
  const inRange = (flag: string, v: number, lo: number, hi: number, hiOpen = false, loOpen = false) => {
    if (!Number.isFinite(v) || (loOpen ? v <= lo : v < lo) || (hiOpen ? v >= hi : v > hi)) {
      fail(flag, `must be in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
    }
  };
  inRange('beta', c.beta, 0, Infinity, false, true);
  inRange('label_smoothing', c.labelSmoothing, 0, 0.5, true);
  inRange('simpo_gamma', c.simpoGamma, 0, Infinity);
  inRange('orpo_lambda', c.orpoLambda, 0, Infinity);
  inRange('desirable_weight', c.desirableWeight, 0, Infinity);
  inRange('undesirable_weight', c.undesirableWeight, 0, Infinity);
  inRange('lr', c.lr, 0, Infinity);
  inRange('weight_decay', c.weightDecay, 0, Infinity);
  inRange('warmup_ratio', c.warmupRatio, 0, 1);
  inRange('grad_clip', c.gradClip, 0, Infinity);
  inRange('eval_ratio', c.evalRatio, 0, 1, true);
  inRange('lora_alpha', c.loraAlpha, 0, Infinity);
  inRange('lora_dropout', c.loraDropout, 0, 1, true);
  if (c.labelSmoothing > 0 && !['sigmoid', 'robust', 'simpo'].includes(c.lossType)) {
    fail('label_smoothing', `applies to the sigmoid (cDPO), robust and simpo losses, not ${c.lossType}`);
  }
  if (c.lossType === 'kto' && c.batchSize < 2) {
    fail('batch_size', "kto estimates its KL baseline from mismatched prompt/completion pairs within a micro-batch: use --batch_size 2 or more (as TRL's KTOTrainer requires)");
  }
  if (c.mergeLoraWeights && c.loraRank === 0) fail('merge_lora_weights', 'needs --lora_rank > 0 (without LoRA the full weights are saved anyway)');
  if (c.frozenDtype !== undefined && !(FROZEN_DTYPES as readonly string[]).includes(c.frozenDtype)) fail('frozen_dtype', `must be one of ${FROZEN_DTYPES.join(', ')}, got ${c.frozenDtype}`);
  if (c.frozenDtype && c.frozenDtype !== 'float32' && c.loraRank > 0 && c.mergeLoraWeights) {
    fail('merge_lora_weights', `cannot merge into a base held in ${c.frozenDtype} (--frozen_dtype): save the adapter, then merge it into the float32 checkpoint with convert`);
  }
  return c;
}
