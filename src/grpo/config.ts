/**
 * Everything a GRPO run is configured by, grouped models / data / rewards / rollout / algorithm / optimisation / run.
 * Field names are the camelCase of the CLI's flags, which follow TRL's GRPOConfig where it has them
 * (`--num_generations`, `--epsilon_high`, `--loss_type`, `--beta`) and `inference`'s for sampling.
 *
 * Vocabulary: a *step* takes `batchSize` prompts, samples `numGenerations` completions of each (a group), scores
 * them, computes advantages, and makes `numIterations` optimizer steps on that batch (μ in the GRPO paper).
 */
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { configChecks, definedFields } from '../trainer/config_checks.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import type { NonFiniteOptions } from '../trainer/nonfinite_guard.js';
import type { ScheduleFields } from '../trainer/schedule_config.js';
import type { LoraFields, OptimizerFields, RunFields } from '../trainer/stage_fields.js';
import { ADVANTAGE_KINDS, type AdvantageKind, type RewardScaling } from './advantages.js';
import { LOSS_TYPES, type LossType } from './loss.js';

/**
 * With the shared loop controls (a step of them is a GRPO step: rollout, then numIterations optimizer steps), the
 * schedule flags (they count optimizer steps) and the non-finite guard's.
 */
export interface GrpoConfig extends LoopControlsConfig, ScheduleFields, NonFiniteOptions, LoraFields, OptimizerFields, RunFields {
  // --- models ---
  /** The policy starts from it; with beta > 0 it is also the frozen reference. HF dir or Hub id. */
  pretrain: string;
  model?: string;
  tokenizer?: string;

  // --- LoRA (LoraFields); with a rank, the reference is the policy with its adapter off ---
  loraTarget?: string[] | string;

  // --- data ---
  /** Prompts with any other columns (JSON, JSONL, CSV, …: whatever src/data/readers.ts reads). */
  dataset: string;
  /** Column holding the prompt: a string or a list of {role, content} messages (default: detected). */
  promptColumn?: string;
  /**
   * A built-in template, `chat_template` (the model's own, with the generation prompt), or `auto`/none: the template
   * the SFT directory recorded, else the model's chat template, else `alpaca`.
   */
  promptTemplate?: string;
  /** Held-out prompts (same columns as `dataset`): greedy completions scored by the rewards (eval/reward, eval/accuracy). */
  evalDataset?: string;
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
  /** Prompts per step over all ranks: batchSize = globalBatchSize / ranks. */
  globalBatchSize?: number;
  /** Completions per prompt (G). */
  numGenerations: number;
  /** Without maxSteps, this many passes over the prompts. */
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

  // --- optimisation: OptimizerFields, ScheduleFields (--lr_scheduler, default constant) ---

  // --- run (RunFields) ---
  /** Log sample completions with their rewards every this many steps (0: never). */
  sampleEvery: number;
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
  evalSteps: 0,
  loggingSteps: 1,
  saveTotalLimit: 0,
  saveBest: false,
  lrScheduler: 'constant',
  warmupRatio: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  needOptimCkpt: false,
  sampleEvery: 1,
  seed: 42,
  backend: 'auto',
  strategy: 'naive',
};

/** --metric_for_best when not given: the held-out reward with --eval_dataset, else the steps' own reward (as PPO's). */
export function defaultGrpoBestMetric(c: Pick<GrpoConfig, 'evalDataset'>): string {
  return c.evalDataset ? 'eval/reward' : 'reward';
}

export function resolveGrpoConfig(input: GrpoConfigInput): GrpoConfig {
  const c: GrpoConfig = { ...GRPO_DEFAULTS, ...definedFields(input) } as GrpoConfig;
  const check = configChecks();
  check.required([['--pretrain', c.pretrain], ['--dataset', c.dataset], ['--save_path', c.savePath]]);
  const posInt = (flag: string, v: number) => check.intAtLeast(flag, v, 1);
  if (!c.rewardFuncs.length && !c.rmPaths.length) check.fail('--reward_funcs', 'give at least one reward (accuracy, format, length, ./module.mjs) or --rm_path');
  if (c.promptTemplate !== undefined) check.oneOf('--prompt_template', c.promptTemplate, PROMPT_TEMPLATE_CHOICES);
  check.common(c);
  check.frozenDtype(c);
  posInt('--batch_size', c.batchSize);
  if (c.globalBatchSize !== undefined) posInt('--global_batch_size', c.globalBatchSize);
  posInt('--num_generations', c.numGenerations);
  posInt('--max_epochs', c.maxEpochs);
  posInt('--max_prompt_length', c.maxPromptLength);
  posInt('--max_new_tokens', c.maxNewTokens);
  check.inRange('--temperature', c.temperature, 0, Infinity, { loOpen: true });
  check.intAtLeast('--top_k', c.topK, 0);
  check.inRange('--top_p', c.topP, 0, 1, { loOpen: true });
  posInt('--micro_batch_size', c.microBatchSize);
  check.oneOf('--advantage', c.advantage, ADVANTAGE_KINDS);
  check.oneOf('--scale_rewards', c.scaleRewards, ['group', 'batch', 'none']);
  check.oneOf('--loss_type', c.lossType, LOSS_TYPES);
  if (c.numGenerations < 2 && c.advantage !== 'reinforce_pp') check.fail('--num_generations', `must be ≥ 2 for --advantage ${c.advantage}: a group needs a baseline`);
  check.inRange('--epsilon', c.epsilon, 0, 1);
  if (c.epsilonHigh !== undefined) check.inRange('--epsilon_high', c.epsilonHigh, 0, Infinity);
  posInt('--num_iterations', c.numIterations);
  check.inRange('--beta', c.beta, 0, Infinity);
  check.inRange('--warmup_ratio', c.warmupRatio, 0, 1);
  check.intAtLeast('--sample_every', c.sampleEvery, 0);
  if (c.lengthTarget !== undefined) posInt('--length_target', c.lengthTarget);
  if (c.rewardWeights) for (const w of c.rewardWeights) if (!Number.isFinite(w)) check.fail('--reward_weights', `must be numbers, got ${c.rewardWeights.join(',')}`);
  if (c.evalSteps > 0 && !c.evalDataset) {
    check.fail('--eval_steps', 'train_grpo evaluates held-out prompts only with --eval_dataset; without it, each step\'s metrics (reward, ' +
      'rewards/<fn>/mean, ...) are logged every --logging_steps steps, and --save_best keeps the best step by --metric_for_best (default reward)');
  }
  return c;
}

/** Whether the run needs the reference model's log-probs at all. */
export function needsReference(c: Pick<GrpoConfig, 'beta'>): boolean {
  return c.beta > 0;
}
