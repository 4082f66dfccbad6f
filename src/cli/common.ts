/**
 * What every command shares: option groups with ColossalChat's flag names, number parsing with clear errors, run
 * setup (backend, seed), model + tokenizer loading, and a main wrapper that prints errors without a stack trace.
 */
import { Command, Option } from 'commander';
import { initBackend, BACKENDS, BACKEND_ENV, type BackendChoice } from '../engine/backend.js';
import { THREADS_ENV } from '../engine/native_backend.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { hasTokenizerFiles, loadPretrained, type LoadedModel } from '../models/pretrained.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { setGradientCheckpointingDefault } from '../models/decoder.js';
import { STRATEGIES, type StrategyKind } from '../strategies/strategy.js';
import { NONFINITE_DEFAULTS } from '../trainer/nonfinite_guard.js';
import { LR_SCHEDULERS, WARMUP_STARTS, type LrSchedulerName, type WarmupStart } from '../trainer/schedule.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import { FROZEN_DTYPE_HELP, FROZEN_DTYPES, frozenDtypeFromFlags, type FrozenDtype } from '../models/frozen_dtype.js';

export { int, float, bool } from './args.js';
import { int, float, bool } from './args.js';

/**
 * `--threads <n>`: the native backend's kernel threads and OpenBLAS's (env RLHF_THREADS). Parsing it sets the env
 * variable, so the backend reads it wherever the command initialises it.
 */
export function threadsOption(): Option {
  return new Option('--threads <n>', `CPU threads for the native backend's kernels and OpenBLAS (env ${THREADS_ENV}; default: the cores divided among the MPI ranks on this node)`)
    .argParser((v: string) => {
      const n = int('--threads', 1)(v);
      process.env[THREADS_ENV] = String(n);
      return n;
    });
}

/** --backend, --threads, --seed, --strategy, --log_dir: every training command has them. */
export function addRunOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption())
    .addOption(new Option('--strategy <name>', 'training strategy').choices([...STRATEGIES]).default('naive'))
    .option('--seed <n>', 'random seed: the same seed on the same backend repeats a run exactly', int('--seed'), 42)
    .option('--log_dir <dir>', 'where metrics.jsonl and TensorBoard event files go (default: <save_path>/logs)')
    .option('--skip_nonfinite_steps <n>', 'let up to n steps with a NaN/inf loss or gradient pass (update skipped) instead of stopping the run', int('--skip_nonfinite_steps', 0), NONFINITE_DEFAULTS.skipNonfiniteSteps)
    .option('--loss_spike_factor <k>', 'stop the run when a step\'s loss exceeds k × max(median of the last 32 step losses, 1) (0: off)', float('--loss_spike_factor', 0), NONFINITE_DEFAULTS.lossSpikeFactor)
    .option('--gradient_checkpointing [bool]', 'activation recompute: keep only each transformer block\'s input during the forward pass and run the block again in the backward pass (the same gradients, a fraction of the activation memory, about one more forward of compute); applies to the models being trained', bool, false)
    // Models are created deep inside each stage; the flag sets the default every model created afterwards starts with.
    .on('option:gradient_checkpointing', (v: string | null) => setGradientCheckpointingDefault(v == null ? true : bool(v)));
}

/** --model, --pretrain, --tokenizer. */
export function addModelOptions(cmd: Command, pretrainRequired = true): Command {
  const pretrain = '--pretrain <dir|hub id>';
  return cmd
    .addOption(new Option('--model <type>', 'model family; read from config.json when omitted').choices([...SUPPORTED_MODEL_TYPES]))
    [pretrainRequired ? 'requiredOption' : 'option'](pretrain, 'HF model directory, or a Hub id resolved through the HF cache')
    .option('--tokenizer <dir>', 'tokenizer directory (default: the --pretrain directory)');
}

/** LoRA flags, PEFT's meanings. */
export function addLoraOptions(cmd: Command): Command {
  return cmd
    .option('--lora_rank <r>', 'LoRA rank; 0 trains every weight', int('--lora_rank'), 0)
    .option('--lora_alpha <a>', 'LoRA alpha (scaling = alpha / rank)', float('--lora_alpha', 0), 16)
    .option('--lora_dropout <p>', 'dropout on the LoRA input', float('--lora_dropout', 0, 1), 0)
    .option('--lora_target <modules>', 'comma-separated PEFT target module names (default per model family), or all-linear')
    .option('--merge_lora_weights [bool]', 'save full weights with the adapter merged in, instead of a PEFT adapter', bool, false)
    .addOption(new Option('--frozen_dtype <dtype>', FROZEN_DTYPE_HELP).choices([...FROZEN_DTYPES]))
    .option('--load_in_8bit [bool]', 'the frozen models in int8 (= --frozen_dtype int8)', bool, false);
}

/** Optimizer, schedule and batch flags (transformers' names for the schedule, PaddleNLP's for global/micro batch). */
export function addOptimOptions(cmd: Command, defaults: { lr: number; batchSize: number; maxEpochs: number }): Command {
  cmd.option('--lr <lr>', 'peak learning rate', float('--lr', 0), defaults.lr);
  addScheduleOptions(cmd, { scheduler: 'cosine', warmupRatio: 0.03 });
  return cmd
    .option('--weight_decay <wd>', 'AdamW decoupled weight decay', float('--weight_decay', 0), 0)
    .option('--grad_clip <norm>', 'clip the global gradient norm (0: off)', float('--grad_clip', 0), 1.0)
    .option('--accumulation_steps <n>', 'micro-batches per optimizer step', int('--accumulation_steps', 1), 1)
    .option('--batch_size <n>', 'samples per micro-batch on each rank', int('--batch_size', 1), defaults.batchSize)
    .option('--global_batch_size <n>', 'samples per optimizer step over all ranks: accumulation = G / (micro-batch × ranks), printed', int('--global_batch_size', 1))
    .option('--micro_batch_size <n>', 'samples per forward/backward on each rank (with --global_batch_size; default --batch_size)', int('--micro_batch_size', 1))
    .option('--max_epochs <n>', 'passes over the data (--max_steps overrides)', int('--max_epochs', 1), defaults.maxEpochs);
}

/**
 * --lr_scheduler, --warmup_ratio, --warmup_steps, --warmup_start, --min_lr, --decay_steps, --adam_beta1, --adam_beta2
 * (transformers' names where it has them); `scheduleConfigFromOptions` maps them. Steps here are optimizer steps in every stage.
 */
export function addScheduleOptions(cmd: Command, defaults: { scheduler: LrSchedulerName; warmupRatio: number }): Command {
  return cmd
    .addOption(new Option('--lr_scheduler <name>', 'learning-rate schedule over the optimizer steps: cosine (to 0), cosine_with_min_lr (to --min_lr), linear (to 0), constant (no warm-up), constant_with_warmup, noam (lr·√w·min(n^-0.5, n·w^-1.5), n the update number: --lr is the peak, at the w-th update)').choices([...LR_SCHEDULERS]).default(defaults.scheduler))
    .option('--warmup_ratio <r>', 'share of the optimizer steps for linear warm-up from 0', float('--warmup_ratio', 0, 1), defaults.warmupRatio)
    .option('--warmup_steps <n>', 'warm-up in optimizer steps (overrides --warmup_ratio)', int('--warmup_steps', 0))
    .addOption(new Option('--warmup_start <form>', 'how the warm-up of w steps counts: zero (lr·step/w, the first update at lr 0, as transformers) or one (lr·(step+1)/(w+1), never 0, as nanoGPT)').choices([...WARMUP_STARTS]).default('zero'))
    .option('--min_lr <lr>', 'floor of --lr_scheduler cosine_with_min_lr', float('--min_lr', 0))
    .option('--decay_steps <n>', 'the decay (cosine, cosine_with_min_lr, linear) ends at this optimizer step, then holds its floor (default: the last step)', int('--decay_steps', 1))
    .option('--adam_beta1 <b>', 'AdamW beta1', float('--adam_beta1', 0, 1), 0.9)
    .option('--adam_beta2 <b>', 'AdamW beta2 (nanoGPT uses 0.99 for small models)', float('--adam_beta2', 0, 1), 0.999);
}

/** commander's parsed options → the fields of `addScheduleOptions`'s flags. */
export function scheduleConfigFromOptions(o: Record<string, unknown>): Pick<OptimConfig, 'lrScheduler' | 'warmupRatio' | 'warmupSteps' | 'warmupStart' | 'minLr' | 'decaySteps' | 'adamBeta1' | 'adamBeta2'> {
  return {
    lrScheduler: o.lr_scheduler as LrSchedulerName,
    warmupRatio: o.warmup_ratio as number,
    warmupSteps: o.warmup_steps as number | undefined,
    warmupStart: o.warmup_start as WarmupStart,
    minLr: o.min_lr as number | undefined,
    decaySteps: o.decay_steps as number | undefined,
    adamBeta1: o.adam_beta1 as number,
    adamBeta2: o.adam_beta2 as number,
  };
}

/** Config fields of the flags `addOptimOptions` declares. */
export interface OptimConfig {
  lr: number;
  lrScheduler: LrSchedulerName;
  weightDecay: number;
  warmupRatio: number;
  warmupSteps: number | undefined;
  warmupStart: WarmupStart;
  minLr: number | undefined;
  decaySteps: number | undefined;
  adamBeta1: number;
  adamBeta2: number;
  gradClip: number;
  accumulationSteps: number;
  batchSize: number;
  globalBatchSize: number | undefined;
  microBatchSize: number | undefined;
  maxEpochs: number;
}

/** commander's parsed options → the fields of `addOptimOptions`'s flags. */
export function optimConfigFromOptions(o: Record<string, unknown>): OptimConfig {
  return {
    lr: o.lr as number,
    ...scheduleConfigFromOptions(o),
    weightDecay: o.weight_decay as number,
    gradClip: o.grad_clip as number,
    accumulationSteps: o.accumulation_steps as number,
    batchSize: o.batch_size as number,
    globalBatchSize: o.global_batch_size as number | undefined,
    microBatchSize: o.micro_batch_size as number | undefined,
    maxEpochs: o.max_epochs as number,
  };
}

/** What a "step" is and what evaluation a stage has, for the help texts of `addLoopControlOptions`. */
export interface LoopControlHelp {
  /** "optimizer steps" (SFT, RM) or "episodes" (PPO). */
  unit: string;
  /** Default of --logging_steps. */
  loggingSteps: number;
  /** What --eval_steps evaluates, or null when the stage has no evaluation (the flag then explains and refuses). */
  evaluates: string | null;
  /** Metric --save_best ranks by when --metric_for_best is not given. */
  defaultMetric: string;
  /** The flag --max_steps overrides (--max_epochs, --num_episodes). */
  overrides: string;
  /** Other metrics --metric_for_best can name, for its help. */
  otherMetrics?: string;
  /** Why the unit is what it is, appended to --max_steps's help. */
  unitNote?: string;
  /** When the stage evaluates without --eval_steps (default: "at the end of each epoch"). */
  evalDefault?: string;
}

/**
 * --max_steps, --eval_steps, --logging_steps, --save_total_limit, --save_best, --metric_for_best, --greater_is_better
 * (transformers' TrainingArguments names; --save_steps is in addCheckpointOptions).
 */
export function addLoopControlOptions(cmd: Command, h: LoopControlHelp): Command {
  return cmd
    .option('--max_steps <n>', `stop after n ${h.unit} in all (overrides ${h.overrides})${h.unitNote ? `; ${h.unitNote}` : ''}`, int('--max_steps', 1))
    .option('--eval_steps <n>', h.evaluates
      ? `evaluate (${h.evaluates}) every n ${h.unit} and at the end (default: ${h.evalDefault ?? 'at the end of each epoch'})`
      : 'not available: this stage has no held-out evaluation (an error says so); its metrics are logged every --logging_steps', int('--eval_steps', 1))
    .option('--logging_steps <n>', `log training metrics every n ${h.unit} (and at the last)`, int('--logging_steps', 1), h.loggingSteps)
    .option('--save_total_limit <k>', 'keep at most k checkpoint-<step> directories, removing the oldest (never the best one nor the one resumed from); 0: all', int('--save_total_limit', 0), 0)
    .option('--save_best [bool]', `also keep the best model so far in <save_path>/best, ranked by --metric_for_best`, bool, false)
    .option('--metric_for_best <name>', `metric ranking --save_best (default ${h.defaultMetric})${h.otherMetrics ? `; or ${h.otherMetrics}` : ''}`)
    .option('--greater_is_better [bool]', 'whether a larger --metric_for_best is better (default: false for losses and perplexity, true otherwise)', bool);
}

/** commander's parsed options → the LoopControls fields (--save_steps comes from the checkpoint group). */
export function loopControlsFromOptions(o: Record<string, unknown>): Omit<LoopControlsConfig, 'saveSteps'> {
  return {
    maxSteps: o.max_steps as number | undefined,
    evalSteps: (o.eval_steps as number | undefined) ?? 0,
    loggingSteps: o.logging_steps as number,
    saveTotalLimit: o.save_total_limit as number,
    saveBest: o.save_best as boolean,
    metricForBest: o.metric_for_best as string | undefined,
    greaterIsBetter: o.greater_is_better as boolean | undefined,
  };
}

/** --save_path, --save_steps, --need_optim_ckpt, --resume. */
export function addCheckpointOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--save_path <dir>', 'output directory (an HF model directory)')
    .option('--save_steps <n>', 'also write <save_path>/checkpoint-<step> every n steps (0: only at the end)', int('--save_steps'), 0)
    .option('--need_optim_ckpt [bool]', 'write optimizer state with every checkpoint (for --resume)', bool, false)
    .option('--resume <dir>', 'continue from a checkpoint directory written by this command');
}

export function parseTargets(v: string | undefined): string[] | string | undefined {
  if (!v) return undefined;
  if (v === 'all-linear') return v;
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Config fields of the flags every training command has: run, LoRA and checkpoint groups, and --skip_bad_records. */
export interface SharedTrainingConfig {
  backend: BackendChoice;
  strategy: StrategyKind;
  seed: number;
  logDir: string | undefined;
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  loraTarget: string[] | string | undefined;
  mergeLoraWeights: boolean;
  savePath: string;
  saveSteps: number;
  needOptimCkpt: boolean;
  resume: string | undefined;
  skipBadRecords: boolean;
  skipNonfiniteSteps: number;
  lossSpikeFactor: number;
  /** --frozen_dtype / --load_in_8bit: the precision of the frozen models. */
  frozenDtype: FrozenDtype;
}

/** commander's parsed options -> the shared config fields, so each command maps only its own flags. */
export function sharedConfigFromOptions(o: Record<string, unknown>): SharedTrainingConfig {
  return {
    backend: o.backend as BackendChoice,
    strategy: o.strategy as StrategyKind,
    seed: o.seed as number,
    logDir: o.log_dir as string | undefined,
    loraRank: o.lora_rank as number,
    loraAlpha: o.lora_alpha as number,
    loraDropout: o.lora_dropout as number,
    loraTarget: parseTargets(o.lora_target as string | undefined),
    mergeLoraWeights: o.merge_lora_weights as boolean,
    savePath: o.save_path as string,
    saveSteps: o.save_steps as number,
    needOptimCkpt: o.need_optim_ckpt as boolean,
    resume: o.resume as string | undefined,
    // Each command declares --skip_bad_records itself (with the same meaning), next to its data flags.
    skipBadRecords: o.skip_bad_records as boolean,
    skipNonfiniteSteps: o.skip_nonfinite_steps as number,
    lossSpikeFactor: o.loss_spike_factor as number,
    frozenDtype: frozenDtypeFromFlags(o.frozen_dtype as string | undefined, o.load_in_8bit as boolean | undefined),
  };
}

export async function setupRun(opts: { backend: string; seed: number }): Promise<string> {
  return initBackend(opts.backend);
}

export interface ModelAndTokenizer extends LoadedModel {
  tokenizer: Tokenizer;
  /** Local directory the model came from (a Hub id resolved to its cache snapshot). */
  pretrainDir: string;
}

/** Loads --pretrain (and --tokenizer), checking --model against config.json. */
export async function loadModelAndTokenizer(opts: {
  pretrain: string; model?: string; tokenizer?: string; lora?: string; adapter?: string; promptLearning?: boolean;
}): Promise<ModelAndTokenizer> {
  const dir = await resolvePretrained(opts.pretrain);
  const loaded = loadPretrained(dir, { adapter: opts.adapter ?? opts.lora, promptLearning: opts.promptLearning });
  if (opts.model && opts.model !== loaded.model.config.modelType) {
    loaded.model.dispose();
    throw new Error(`--model ${opts.model} but ${dir}/config.json says model_type "${loaded.model.config.modelType}"`);
  }
  let tokenizer: Tokenizer;
  try {
    // An adapter directory without tokenizer files (as PEFT saves one) uses its base model's.
    tokenizer = await Tokenizer.fromDir(opts.tokenizer ?? (loaded.baseDir && !hasTokenizerFiles(dir) ? loaded.baseDir : dir));
  } catch (e) {
    loaded.model.dispose();
    throw e;
  }
  return { ...loaded, tokenizer, pretrainDir: dir };
}

export { runMain } from './run_main.js';
