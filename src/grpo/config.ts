/**
 * Everything a GRPO run is configured by, grouped models / data / rewards / rollout / algorithm / optimisation / run.
 * Field names are the camelCase of the CLI's flags, which follow TRL's GRPOConfig where it has them
 * (`--num_generations`, `--epsilon_high`, `--loss_type`, `--beta`) and `inference`'s for sampling.
 *
 * Vocabulary: a *step* takes `batchSize` prompts, samples `numGenerations` completions of each (a group), scores
 * them, computes advantages, and makes `numIterations` optimizer steps on that batch (μ in the GRPO paper).
 */
import { ADVANTAGE_KINDS, type AdvantageKind, type RewardScaling } from './advantages.js';
import { LOSS_TYPES, type LossType } from './loss.js';
import { FROZEN_DTYPES, type FrozenDtype } from '../models/ops/frozen_dtypes.js';

export interface GrpoConfig {
  // --- models ---
  /** The policy starts from it; with beta > 0 it is also the frozen reference. HF dir or Hub id. */
  pretrain: string;
  model?: string;
  tokenizer?: string;

  // --- LoRA (PEFT meanings); with a rank, the reference is the policy with its adapter off ---
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  loraTarget?: string[] | string;
  mergeLoraWeights: boolean;
  /** --frozen_dtype: the reference, the reward models (and, with LoRA, the policy's frozen base) packed in bf16/int8/nf4. */
  frozenDtype?: FrozenDtype;

  // --- data ---
  /** Prompts with any other columns (JSON, JSONL, CSV, …: whatever src/data/readers.ts reads). */
  dataset: string;
  /** Column holding the prompt: a string or a list of {role, content} messages (default: detected). */
  promptColumn?: string;
  /** Template name (src/data/templates); default: the one recorded in the SFT directory, else `alpaca`. */
  promptTemplate?: string;
  maxDatasetsSize?: number;
  skipBadRecords: boolean;

  // --- rewards ---
  /** Built-ins (accuracy, format, length) and user modules (./file.mjs|.js|.ts), comma-separated or repeated. */
  rewardFuncs: string[];
  /** Reward model directories (train_reward_model output). */
  rmPaths: string[];
  /** One weight per reward function, in order (functions, then reward models). */
  rewardWeights?: number[];
  /** The `format` reward's regex (JS syntax). */
  formatPattern?: string;
  /** The `length` reward's target in tokens; without it, DAPO's soft overlong punishment. */
  lengthTarget?: number;

  // --- rollout ---
  /** Prompts per step (per process under ddp/zero2). */
  batchSize: number;
  /** Completions per prompt (G). */
  numGenerations: number;
  /** Steps to run; without it, maxEpochs passes over the prompts. */
  maxSteps?: number;
  maxEpochs: number;
  /** Prompt tokens at most (longer prompts lose their beginning). */
  maxPromptLength: number;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  /** Completions per forward/backward pass in the update (memory bound); the optimizer step covers them all. */
  microBatchSize: number;

  // --- algorithm ---
  advantage: AdvantageKind;
  /** grpo's reward scaling (TRL's scale_rewards). */
  scaleRewards: RewardScaling;
  lossType: LossType;
  /** Lower clip ε. */
  epsilon: number;
  /** Upper clip ε (DAPO's clip-higher); default: epsilon. */
  epsilonHigh?: number;
  /** Optimizer steps per rollout batch (μ); above 1 the ratio to the rollout policy matters. */
  numIterations: number;
  /** k3 KL weight in the loss (reinforce_pp: the KL coefficient in the reward instead); 0 loads no reference. */
  beta: number;
  /** Drop groups whose rewards are all equal from the update (DAPO's dynamic sampling, without refilling). */
  filterZeroStd: boolean;

  // --- optimisation (AdamW, constant learning rate) ---
  lr: number;
  weightDecay: number;
  gradClip: number;

  // --- run ---
  savePath: string;
  saveSteps: number;
  needOptimCkpt: boolean;
  resume?: string;
  logDir?: string;
  /** Log sample completions with their rewards every this many steps (0: never). */
  sampleEvery: number;
  seed: number;
  backend: string;
  strategy: string;
}

export type GrpoConfigInput = Pick<GrpoConfig, 'pretrain' | 'dataset' | 'savePath'> & Partial<GrpoConfig>;

/** TRL GRPOConfig's defaults where they apply (num_generations 8, epsilon 0.2, beta 0, loss_type dapo, lr 1e-6). */
export const GRPO_DEFAULTS: Omit<GrpoConfig, 'pretrain' | 'dataset' | 'savePath'> = {
  loraRank: 0,
  loraAlpha: 16,
  loraDropout: 0,
  mergeLoraWeights: false,
  skipBadRecords: false,
  rewardFuncs: [],
  rmPaths: [],
  batchSize: 4,
  numGenerations: 8,
  maxEpochs: 1,
  maxPromptLength: 256,
  maxNewTokens: 64,
  temperature: 1,
  topK: 0,
  topP: 1,
  microBatchSize: 16,
  advantage: 'grpo',
  scaleRewards: 'group',
  lossType: 'dapo',
  epsilon: 0.2,
  numIterations: 1,
  beta: 0,
  filterZeroStd: false,
  lr: 1e-6,
  weightDecay: 0,
  gradClip: 1,
  saveSteps: 0,
  needOptimCkpt: false,
  sampleEvery: 1,
  seed: 42,
  backend: 'auto',
  strategy: 'naive',
};

export function resolveGrpoConfig(input: GrpoConfigInput): GrpoConfig {
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as GrpoConfigInput;
  const c: GrpoConfig = { ...GRPO_DEFAULTS, ...given };
  const fail = (flag: string, msg: string): never => {
    throw new Error(`${flag}: ${msg}`);
  };
  for (const [flag, key] of [['--pretrain', 'pretrain'], ['--dataset', 'dataset'], ['--save_path', 'savePath']] as const) {
    if (!c[key]) fail(flag, 'is required');
  }
  const posInt = (flag: string, v: number) => (Number.isInteger(v) && v >= 1) || fail(flag, `must be an integer ≥ 1, got ${v}`);
  const nonNegInt = (flag: string, v: number) => (Number.isInteger(v) && v >= 0) || fail(flag, `must be an integer ≥ 0, got ${v}`);
  if (c.frozenDtype !== undefined && !(FROZEN_DTYPES as readonly string[]).includes(c.frozenDtype)) fail('--frozen_dtype', `must be one of ${FROZEN_DTYPES.join(', ')}, got ${c.frozenDtype}`);
  if (c.frozenDtype && c.frozenDtype !== 'float32' && c.loraRank > 0 && c.mergeLoraWeights) {
    fail('--merge_lora_weights', `cannot merge into a base held in ${c.frozenDtype} (--frozen_dtype): save the adapter, then merge it into the float32 checkpoint with convert`);
  }
  const inRange = (flag: string, v: number, lo: number, hi: number) => (Number.isFinite(v) && v >= lo && v <= hi) || fail(flag, `must be in [${lo}, ${hi}], got ${v}`);
  if (!c.rewardFuncs.length && !c.rmPaths.length) fail('--reward_funcs', 'give at least one reward (accuracy, format, length, ./module.mjs) or --rm_path');
  posInt('--batch_size', c.batchSize);
  posInt('--num_generations', c.numGenerations);
  if (c.maxSteps !== undefined) posInt('--max_steps', c.maxSteps);
  posInt('--max_epochs', c.maxEpochs);
  posInt('--max_prompt_length', c.maxPromptLength);
  posInt('--max_new_tokens', c.maxNewTokens);
  inRange('--temperature', c.temperature, 1e-6, Infinity);
  nonNegInt('--top_k', c.topK);
  inRange('--top_p', c.topP, 1e-6, 1);
  posInt('--micro_batch_size', c.microBatchSize);
  if (!ADVANTAGE_KINDS.includes(c.advantage)) fail('--advantage', `must be one of ${ADVANTAGE_KINDS.join(', ')}, got ${c.advantage}`);
  if (!['group', 'batch', 'none'].includes(c.scaleRewards)) fail('--scale_rewards', `must be group, batch or none, got ${c.scaleRewards}`);
  if (!LOSS_TYPES.includes(c.lossType)) fail('--loss_type', `must be one of ${LOSS_TYPES.join(', ')}, got ${c.lossType}`);
  if (c.numGenerations < 2 && c.advantage !== 'reinforce_pp') fail('--num_generations', `must be ≥ 2 for --advantage ${c.advantage}: a group needs a baseline`);
  inRange('--epsilon', c.epsilon, 0, 1);
  if (c.epsilonHigh !== undefined) inRange('--epsilon_high', c.epsilonHigh, 0, Infinity);
  posInt('--num_iterations', c.numIterations);
  inRange('--beta', c.beta, 0, Infinity);
  inRange('--lr', c.lr, 0, Infinity);
  inRange('--weight_decay', c.weightDecay, 0, Infinity);
  inRange('--grad_clip', c.gradClip, 0, Infinity);
  nonNegInt('--lora_rank', c.loraRank);
  inRange('--lora_dropout', c.loraDropout, 0, 1);
  nonNegInt('--save_steps', c.saveSteps);
  nonNegInt('--sample_every', c.sampleEvery);
  if (c.lengthTarget !== undefined) posInt('--length_target', c.lengthTarget);
  if (c.rewardWeights) for (const w of c.rewardWeights) if (!Number.isFinite(w)) fail('--reward_weights', `must be numbers, got ${c.rewardWeights.join(',')}`);
  if (c.maxDatasetsSize !== undefined) nonNegInt('--max_datasets_size', c.maxDatasetsSize);
  return c;
}

/** Whether the run needs the reference model's log-probs at all. */
export function needsReference(c: Pick<GrpoConfig, 'beta'>): boolean {
  return c.beta > 0;
}
