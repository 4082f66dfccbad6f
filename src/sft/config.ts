/**
 * Everything a supervised fine-tuning run is told, as one typed object. Field names are the camelCase forms of
 * ColossalChat's `train_sft.py` flags (`--max_epochs` -> maxEpochs); `resolveSftConfig` fills the defaults and
 * `validateSftConfig` rejects what cannot work, with an error that says how to fix it, before anything is loaded.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SUPPORTED_MODEL_TYPES, type ModelType } from '../models/config.js';
import { AUTO_TEMPLATE, PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { STRATEGIES } from '../strategies/strategy.js';
import { BACKENDS } from '../engine/backend.js';
import type { NonFiniteOptions } from '../trainer/nonfinite_guard.js';
import type { ResumeNotedField } from '../trainer/stage_checkpoint.js';

/** `--peft`: which parameter-efficient method trains (PEFT's LORA, PREFIX_TUNING, PROMPT_TUNING). */
export const PEFT_METHODS = ['lora', 'prefix', 'prompt'] as const;
export type PeftMethod = (typeof PEFT_METHODS)[number];
/** `--num_virtual_tokens` when not given (PEFT's examples use 20). */
export const DEFAULT_NUM_VIRTUAL_TOKENS = 20;
export const PROMPT_TUNING_INITS = ['random', 'sample_vocab'] as const;
import type { BinDtype } from '../data/token_bin.js';
import { FROZEN_DTYPES, type FrozenDtype } from '../models/ops/frozen_dtypes.js';
import type { LoopControlsConfig } from '../trainer/loop_controls.js';
import type { ScheduleFields } from '../trainer/schedule_config.js';

/** `--tokenizer char`: build a character vocabulary from the corpus (with --from_config). */
export const CHAR_TOKENIZER = 'char';

/**
 * The shared training controls (src/trainer/loop_controls.ts: --max_steps, --eval_steps, --logging_steps,
 * --save_total_limit, --save_best, ...; src/trainer/schedule_config.ts: --lr_scheduler, --warmup_steps, --min_lr,
 * --decay_steps, --adam_beta1/2) and the global/micro batch flags are part of it.
 */
export interface SftConfig extends LoopControlsConfig, ScheduleFields, NonFiniteOptions {
  // ---- model ----
  /** Model family; read from config.json when omitted (and checked against it when given). */
  model?: ModelType;
  /** HF model directory or Hub id to fine-tune. Not needed with `fromConfig`. */
  pretrain?: string;
  /**
   * Train a fresh model instead: a config.json path (or a directory holding one), or `family:key=value,...`
   * (`gpt2:n_layer=6,n_head=6,n_embd=384`), HF key names over that family's default config.
   */
  fromConfig?: string;
  /** Tokenizer directory (default: the pretrain directory), or `char` to build one from the corpus. */
  tokenizer?: string;
  /** LoRA rank; 0 trains every weight. */
  loraRank: number;
  /** LoRA alpha (scaling = alpha / rank). */
  loraAlpha: number;
  /** Dropout on the LoRA input. */
  loraDropout: number;
  /** PEFT target module names, or `all-linear`; default per family (DEFAULT_LORA_TARGETS). */
  loraTarget?: string[] | string;
  /** Save full weights with the adapter merged in, instead of a PEFT adapter. */
  mergeLoraWeights: boolean;
  /** --frozen_dtype: the base under the LoRA / prefix / prompt adapter held packed (bf16, int8, nf4); default float32. */
  frozenDtype?: FrozenDtype;
  /**
   * Parameter-efficient method: `lora` (the default when loraRank > 0), `prefix` (prefix tuning / P-tuning v2:
   * trainable key/value positions in every layer) or `prompt` (prompt tuning: trainable input embeddings). Unset
   * with loraRank 0: every weight trains.
   */
  peft?: PeftMethod;
  /** Virtual tokens of a prefix/prompt adapter (default DEFAULT_NUM_VIRTUAL_TOKENS). */
  numVirtualTokens?: number;
  /** Prompt tuning's initial embeddings: `random` (standard normal, PEFT's RANDOM) or `sample_vocab` (token rows). */
  promptTuningInit?: (typeof PROMPT_TUNING_INITS)[number];

  // ---- data ----
  /** Training files (JSON, JSONL, .gz, CSV, Arrow, save_to_disk dirs, .txt). */
  dataset: string[];
  /** Held-out files; when empty, `evalRatio` of the training samples are held out. */
  evalDataset: string[];
  /** Share of training samples held out for evaluation when no evalDataset is given (0: no evaluation). */
  evalRatio: number;
  /** Use at most this many samples (records for plain text) in all. */
  maxDatasetsSize?: number;
  /** Longest sample in tokens (chat data), or block size (plain text). */
  maxLen: number;
  /** Prompt template for chat data: alpaca, chatml, plain, human_assistant, zh_dialogue. */
  promptTemplate: string;
  /** Field holding the prompt (overrides format detection; with responseColumn). */
  promptColumn?: string;
  /** Field holding the reply to train on. */
  responseColumn?: string;
  /** Skip (and count) malformed records instead of stopping. */
  skipBadRecords: boolean;
  /** Where packed token files of plain-text corpora are cached. */
  cacheDir: string;
  /** Width of the ids in `.bin` token files (nanoGPT: uint16). */
  binDtype: BinDtype;
  /** `.bin` files: walk consecutive blocks in order instead of random blocks (nanoGPT's get_batch). */
  sequential: boolean;
  /** `.bin` eval file: evaluate on this many batches of random blocks (nanoGPT's eval_iters); default every block. */
  evalIters?: number;

  // ---- training ----
  maxEpochs: number;
  /** Samples per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  accumulationSteps: number;
  /** Samples per optimizer step over all ranks; accumulation is derived from it (src/trainer/batch_size.ts). */
  globalBatchSize?: number;
  /** Samples per forward/backward on one rank, with globalBatchSize (default batchSize). */
  microBatchSize?: number;
  /** Peak learning rate (linear warm-up, then cosine decay to 0). */
  lr: number;
  /** AdamW decoupled weight decay (not applied to biases and norms). */
  weightDecay: number;
  /** Share of optimizer steps spent warming up. */
  warmupRatio: number;
  /** Max global gradient norm (0: no clipping). */
  gradClip: number;
  /** Seeds data order, the held-out split, fresh weights, LoRA init and dropout. */
  seed: number;
  strategy: (typeof STRATEGIES)[number];
  backend: (typeof BACKENDS)[number];

  // ---- output ----
  /** Final model directory; checkpoints go to <savePath>/checkpoint-<step>. */
  savePath: string;
  /** Also checkpoint (and evaluate) every n optimizer steps; 0: only at the end. */
  saveSteps: number;
  /** Write optimizer state with every checkpoint, so it can be resumed. */
  needOptimCkpt: boolean;
  /** metrics.jsonl and TensorBoard events (default <savePath>/logs). */
  logDir?: string;
  /** Checkpoint directory to continue from (written with optimizer state). */
  resume?: string;
}

/** Defaults follow ColossalChat's train_sft.py where it has the flag. */
export const DEFAULT_SFT_CONFIG = {
  loraRank: 0,
  loraAlpha: 16,
  loraDropout: 0,
  mergeLoraWeights: false,
  evalDataset: [] as string[],
  evalRatio: 0,
  maxLen: 512,
  promptTemplate: AUTO_TEMPLATE,
  skipBadRecords: false,
  cacheDir: path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'rlhf-ts', 'tokens'),
  maxEpochs: 3,
  batchSize: 4,
  accumulationSteps: 1,
  lr: 5e-6,
  weightDecay: 0,
  warmupRatio: 0.03,
  gradClip: 1.0,
  seed: 42,
  strategy: 'naive',
  backend: 'auto',
  saveSteps: 0,
  needOptimCkpt: false,
  binDtype: 'uint16',
  sequential: false,
  lrScheduler: 'cosine',
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  evalSteps: 0,
  loggingSteps: 1,
  saveTotalLimit: 0,
  saveBest: false,
} satisfies Partial<SftConfig>;

export type SftConfigInput = Partial<SftConfig> & Pick<SftConfig, 'dataset' | 'savePath'>;

/** The defaults under the given fields (undefined fields take the default). */
export function resolveSftConfig(input: SftConfigInput): SftConfig {
  const defined = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  return { ...DEFAULT_SFT_CONFIG, ...defined } as SftConfig;
}

/** Checks that need no file contents; every message names the flag and what to do. */
export function validateSftConfig(c: SftConfig): void {
  const fail = (msg: string): never => {
    throw new Error(msg);
  };
  const int = (v: number, flag: string, min: number) => {
    if (!Number.isInteger(v) || v < min) fail(`${flag} must be an integer >= ${min}, got ${v}`);
  };
  if (!c.dataset.length) fail('no training data: pass --dataset PATH (JSON, JSONL, CSV, Arrow, .txt)');
  for (const f of [...c.dataset, ...c.evalDataset]) if (!existsSync(f)) fail(`dataset ${f} does not exist`);
  if (!c.savePath) fail('--save_path is required');
  if (!c.pretrain && !c.fromConfig && !c.resume) fail('say which model to train: --pretrain DIR, or --from_config for a fresh one');
  if (c.pretrain && c.fromConfig) fail('--pretrain and --from_config both given: --pretrain fine-tunes a model, --from_config builds a new one');
  if (c.model && !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(c.model)) {
    fail(`--model ${c.model} is not supported (choose one of: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  if (c.tokenizer === CHAR_TOKENIZER && !c.fromConfig && !c.resume) {
    fail('--tokenizer char builds a new vocabulary, which only a fresh model can use: add --from_config');
  }
  if (c.fromConfig && !c.tokenizer && !c.resume) fail('--from_config needs --tokenizer DIR (or --tokenizer char) to fix the vocabulary');
  int(c.loraRank, '--lora_rank', 0);
  if (c.loraRank > 0 && c.fromConfig) fail('--lora_rank adapts a pretrained model; a --from_config model trains every weight (use --lora_rank 0)');
  if (c.loraRank > 0 && !(c.loraAlpha > 0)) fail(`--lora_alpha must be > 0, got ${c.loraAlpha}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1)) fail(`--lora_dropout must be in [0, 1), got ${c.loraDropout}`);
  validatePeftFlags(c, fail);
  if (c.frozenDtype !== undefined && c.frozenDtype !== 'float32') {
    if (!(FROZEN_DTYPES as readonly string[]).includes(c.frozenDtype)) fail(`--frozen_dtype must be one of ${FROZEN_DTYPES.join(', ')}, got ${c.frozenDtype}`);
    if (!peftMethodOf(c)) fail(`--frozen_dtype ${c.frozenDtype} packs the frozen base under an adapter: add --lora_rank R or --peft prefix|prompt (full-weight SFT trains every weight in float32)`);
    if (c.mergeLoraWeights) fail(`--merge_lora_weights cannot merge into a base held in ${c.frozenDtype}: save the adapter, then merge it into the float32 checkpoint with convert`);
  }
  if (!(c.evalRatio >= 0 && c.evalRatio < 1)) fail(`--eval_ratio must be in [0, 1), got ${c.evalRatio}`);
  if (c.maxDatasetsSize !== undefined) int(c.maxDatasetsSize, '--max_datasets_size', 1);
  int(c.maxLen, '--max_len', 2);
  if (!PROMPT_TEMPLATE_CHOICES.includes(c.promptTemplate)) fail(`--prompt_template ${c.promptTemplate} is unknown (choose one of: ${PROMPT_TEMPLATE_CHOICES.join(', ')})`);
  int(c.maxEpochs, '--max_epochs', 1);
  int(c.batchSize, '--batch_size', 1);
  int(c.accumulationSteps, '--accumulation_steps', 1);
  if (!(c.lr >= 0)) fail(`--lr must be >= 0, got ${c.lr}`);
  if (!(c.weightDecay >= 0)) fail(`--weight_decay must be >= 0, got ${c.weightDecay}`);
  if (!(c.warmupRatio >= 0 && c.warmupRatio <= 1)) fail(`--warmup_ratio must be in [0, 1], got ${c.warmupRatio}`);
  if (!(c.gradClip >= 0)) fail(`--grad_clip must be >= 0, got ${c.gradClip}`);
  int(c.seed, '--seed', 0);
  int(c.saveSteps, '--save_steps', 0);
  if (c.resume && !existsSync(c.resume)) fail(`--resume ${c.resume} does not exist`);
}

/** The PEFT method a config trains, or null when every weight trains. */
export function peftMethodOf(c: Pick<SftConfig, 'peft' | 'loraRank'>): PeftMethod | null {
  return c.peft ?? (c.loraRank > 0 ? 'lora' : null);
}

/** --peft against the LoRA and virtual-token flags: conflicting combinations are refused, naming both flags. */
function validatePeftFlags(c: SftConfig, fail: (msg: string) => never): void {
  if (c.peft !== undefined && !(PEFT_METHODS as readonly string[]).includes(c.peft)) fail(`--peft ${c.peft} is unknown (choose one of: ${PEFT_METHODS.join(', ')})`);
  const method = peftMethodOf(c);
  if (c.peft === 'lora' && !(c.loraRank > 0)) fail('--peft lora needs --lora_rank R (R >= 1)');
  const virtual = method === 'prefix' || method === 'prompt';
  if (virtual && c.loraRank > 0) fail(`--peft ${method} and --lora_rank ${c.loraRank} conflict: one PEFT method at a time (drop --lora_rank, or use --peft lora)`);
  if (virtual && c.mergeLoraWeights) fail(`--merge_lora_weights merges a LoRA adapter; --peft ${method} trains virtual tokens, which cannot be merged into the weights`);
  if (virtual && c.fromConfig) fail(`--peft ${method} adapts a pretrained model; a --from_config model trains every weight`);
  if (c.numVirtualTokens !== undefined) {
    if (!virtual) fail(`--num_virtual_tokens applies to --peft prefix or --peft prompt${method ? `, not ${method}` : ''}`);
    if (!Number.isInteger(c.numVirtualTokens) || c.numVirtualTokens < 1) fail(`--num_virtual_tokens must be an integer >= 1, got ${c.numVirtualTokens}`);
  }
  if (c.promptTuningInit !== undefined) {
    if (method !== 'prompt') fail('--prompt_tuning_init applies to --peft prompt');
    if (!(PROMPT_TUNING_INITS as readonly string[]).includes(c.promptTuningInit)) fail(`--prompt_tuning_init ${c.promptTuningInit} is unknown (choose one of: ${PROMPT_TUNING_INITS.join(', ')})`);
  }
}

/** Options whose change makes a saved data position or schedule meaningless: a resume must keep them. */
export const RESUME_FIXED_FIELDS = [
  'dataset', 'evalDataset', 'evalRatio', 'maxDatasetsSize', 'maxLen', 'promptTemplate', 'promptColumn',
  'responseColumn', 'batchSize', 'accumulationSteps', 'maxEpochs', 'maxSteps', 'seed', 'loraRank', 'sequential', 'peft', 'numVirtualTokens',
] as const satisfies readonly (keyof SftConfig)[];

/** Settings that may change on --resume: noted, and the run goes on with the new values. */
export const RESUME_NOTED_FIELDS: readonly ResumeNotedField[] = [
  { field: 'lr' }, { field: 'weightDecay' }, { field: 'warmupRatio' }, { field: 'gradClip' }, { field: 'loraAlpha' }, { field: 'loraDropout' },
  { field: 'pretrain', path: true, effect: 'the weights come from the checkpoint (and a LoRA adapter keeps the base it names), not from --pretrain' },
];
