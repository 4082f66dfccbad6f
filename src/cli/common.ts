/**
 * What every command shares: option groups with ColossalChat's flag names, number parsing with clear errors, run
 * setup (backend, seed), model + tokenizer loading, and a main wrapper that prints errors without a stack trace.
 */
import { Command, Option } from 'commander';
import { initBackend, BACKENDS, BACKEND_ENV, type BackendChoice } from '../engine/backend.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { hasTokenizerFiles, loadPretrained, type LoadedModel } from '../models/pretrained.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { STRATEGIES, type StrategyKind } from '../strategies/strategy.js';
import { NONFINITE_DEFAULTS } from '../trainer/nonfinite_guard.js';

export { int, float, bool } from './args.js';
import { int, float, bool } from './args.js';

/** --backend, --seed, --strategy, --log_dir: every training command has them. */
export function addRunOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(new Option('--strategy <name>', 'training strategy').choices([...STRATEGIES]).default('naive'))
    .option('--seed <n>', 'random seed: the same seed on the same backend repeats a run exactly', int('--seed'), 42)
    .option('--log_dir <dir>', 'where metrics.jsonl and TensorBoard event files go (default: <save_path>/logs)')
    .option('--skip_nonfinite_steps <n>', 'let up to n steps with a NaN/inf loss or gradient pass (update skipped) instead of stopping the run', int('--skip_nonfinite_steps', 0), NONFINITE_DEFAULTS.skipNonfiniteSteps)
    .option('--loss_spike_factor <k>', 'stop the run when a step\'s loss exceeds k × max(median of the last 32 step losses, 1) (0: off)', float('--loss_spike_factor', 0), NONFINITE_DEFAULTS.lossSpikeFactor);
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
    .option('--merge_lora_weights [bool]', 'save full weights with the adapter merged in, instead of a PEFT adapter', bool, false);
}

/** Optimizer and schedule flags. */
export function addOptimOptions(cmd: Command, defaults: { lr: number; batchSize: number; maxEpochs: number }): Command {
  return cmd
    .option('--lr <lr>', 'peak learning rate', float('--lr', 0), defaults.lr)
    .option('--weight_decay <wd>', 'AdamW decoupled weight decay', float('--weight_decay', 0), 0)
    .option('--warmup_ratio <r>', 'share of steps for linear warm-up, then cosine decay', float('--warmup_ratio', 0, 1), 0.03)
    .option('--grad_clip <norm>', 'clip the global gradient norm (0: off)', float('--grad_clip', 0), 1.0)
    .option('--accumulation_steps <n>', 'micro-batches per optimizer step', int('--accumulation_steps', 1), 1)
    .option('--batch_size <n>', 'samples per micro-batch', int('--batch_size', 1), defaults.batchSize)
    .option('--max_epochs <n>', 'passes over the data', int('--max_epochs', 1), defaults.maxEpochs);
}

/** Config fields of the flags `addOptimOptions` declares. */
export interface OptimConfig {
  lr: number;
  weightDecay: number;
  warmupRatio: number;
  gradClip: number;
  accumulationSteps: number;
  batchSize: number;
  maxEpochs: number;
}

/** commander's parsed options → the fields of `addOptimOptions`'s flags. */
export function optimConfigFromOptions(o: Record<string, unknown>): OptimConfig {
  return {
    lr: o.lr as number,
    weightDecay: o.weight_decay as number,
    warmupRatio: o.warmup_ratio as number,
    gradClip: o.grad_clip as number,
    accumulationSteps: o.accumulation_steps as number,
    batchSize: o.batch_size as number,
    maxEpochs: o.max_epochs as number,
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
