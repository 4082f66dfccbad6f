/**
 * HF checkpoint directories: load (config.json + model.safetensors, sharded or not, + optional value head and LoRA
 * adapter) and save in the layout `save_pretrained` writes, so transformers loads what we write. A model with a value
 * head (reward model, critic) is read from and written in transformers' `<Family>ForSequenceClassification` layout
 * (src/models/sequence_classification.ts); directories with the older `value_head.*` tensors still load.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { tf, type Tensor } from '../engine/tf.js';
import { readSafetensors, writeSafetensors, type LoadedTensor, type TensorToWrite } from '../hub/safetensors.js';
import { readShardedSafetensors } from '../hub/safetensors_index.js';
import { NO_BIAS_KEY, type ModelConfig } from './config.js';
import { readModelConfigFile } from './config_validation.js';
import { InputFileError } from '../hub/input_error.js';
import { DecoderModel, packableWeights } from './decoder.js';
import { packWeight, type FrozenDtype, type PackedWeight } from './ops/packed_weight.js';
import { ensurePackedKernels } from './ops/packed_kernels.js';
import { absentBiases, buildSpec, causalLmClass, parameterShapes } from './architectures.js';
import { LoraAdapter, allLinears, type LoraConfig } from './lora.js';
import { readPeftAdapter, readPeftAdapterConfig, writePeftAdapter } from '../hub/peft_files.js';
import { PrefixTuningAdapter } from './prefix_tuning.js';
import { PromptTuningAdapter } from './prompt_tuning.js';
import { GENERATION_CONFIG_FILE, readGenerationConfig } from './generation_config.js';
import { LEGACY_VALUE_HEAD_BIAS, LEGACY_VALUE_HEAD_WEIGHT, SCORE_BIAS, SCORE_WEIGHT, ValueHead } from './value_head.js';
import { isSequenceClassificationConfig, RLHF_CONFIG_KEY, sequenceClassificationFields } from './sequence_classification.js';

export const VALUE_HEAD_FILE = 'value_head.safetensors';

export function readConfig(dir: string): ModelConfig {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new InputFileError(dir, 'not a model directory (no config.json)');
  return readModelConfigFile(file);
}

/** Every tensor of the checkpoint's weight files (single file or sharded through model.safetensors.index.json). */
export function readWeights(dir: string): Map<string, LoadedTensor> {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(single)) return readSafetensors(single).tensors;
  if (existsSync(index)) return readShardedSafetensors(index);
  const others = readdirSync(dir).filter((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
  throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json${others.length ? ` (found ${others.join(', ')}: convert it to safetensors first)` : ''}`);
}

/** Maps names from other HF savers onto ours (GPT-2 hub checkpoints omit the `transformer.` prefix). */
function canonicalName(name: string, config: ModelConfig): string {
  const head = name.startsWith('lm_head') || name.startsWith('value_head') || name === SCORE_WEIGHT || name === SCORE_BIAS;
  if (config.modelType === 'gpt2' && !name.startsWith('transformer.') && !head) return `transformer.${name}`;
  if (config.modelType === 'opt' && name.startsWith('decoder.')) return `model.${name}`;
  if (config.modelType === 'bloom' && !name.startsWith('transformer.') && !head) return `transformer.${name}`;
  // transformers 5 calls GPT-NeoX's head lm_head in memory and embed_out on disk.
  if (config.modelType === 'gpt_neox' && name === 'lm_head.weight') return 'embed_out.weight';
  return name;
}

/** A head's tensors: `score.weight`, or the legacy `value_head.weight` + `value_head.bias`. */
function isHeadTensor(name: string): boolean {
  return name === SCORE_WEIGHT || name === SCORE_BIAS || name === LEGACY_VALUE_HEAD_WEIGHT || name === LEGACY_VALUE_HEAD_BIAS;
}

/** `rlhf.score_bias` of a config: the bias of a head first trained in the legacy layout (transformers' has none). */
export function scoreBiasOf(raw: Record<string, unknown>, file: string): number {
  const rlhf = raw[RLHF_CONFIG_KEY];
  const bias = typeof rlhf === 'object' && rlhf !== null ? (rlhf as Record<string, unknown>).score_bias : undefined;
  if (bias === undefined) return 0;
  if (typeof bias !== 'number' || !Number.isFinite(bias)) throw new Error(`${file}: field "${RLHF_CONFIG_KEY}.score_bias" must be a finite number`);
  return bias;
}

/** Builds the head from its tensors (disposing them), naming the directory on error. */
function headFromTensors(tensors: Map<string, Tensor>, scoreBias: number, dir: string): ValueHead {
  try {
    return ValueHead.fromTensors(tensors, scoreBias);
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

export interface LoadedModel {
  model: DecoderModel;
  /**
   * The score head when the checkpoint is a reward model / critic (`score.weight`, or the legacy `value_head.*`);
   * owned by the caller.
   */
  valueHead: ValueHead | null;
  dir: string;
  /** When `dir` holds only a PEFT adapter: the base model directory its adapter_config.json names. */
  baseDir?: string;
}

/** Whether `dir` has tokenizer files (PEFT saves an adapter without them). */
export function hasTokenizerFiles(dir: string): boolean {
  return existsSync(join(dir, 'tokenizer.json')) || existsSync(join(dir, 'vocab.json'));
}

export interface LoadOptions {
  /** A PEFT adapter directory to apply (LoRA; prefix or prompt tuning with `promptLearning`). */
  adapter?: string;
  /** Alias of `adapter`. */
  lora?: string;
  /**
   * Accept prefix- and prompt-tuning adapters. Off by default: they cannot be merged into full weights, so a caller
   * that trains or saves full weights must not receive one silently.
   */
  promptLearning?: boolean;
  /**
   * Read the weight matrices straight into this packed format (--frozen_dtype), never holding the model in float32;
   * for frozen models only. Ignored when an adapter is applied (a LoRA adapter may be merged into the base next: the
   * caller packs after that).
   */
  frozenDtype?: FrozenDtype;
}

/** Loads an HF directory; every shape is checked against config.json before any training starts. */
export function loadPretrained(dir: string, opts: LoadOptions = {}): LoadedModel {
  const adapterDir = opts.adapter ?? opts.lora;
  // A directory holding only a PEFT adapter (a PEFT stage's output) loads its base, then the adapter.
  if (!existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'adapter_config.json'))) {
    if (adapterDir) throw new Error(`${dir} is itself a PEFT adapter; pass its base model as the model and this as the adapter`);
    const base = readPeftAdapterConfig(dir).config.base_model_name_or_path;
    if (typeof base !== 'string' || !base) throw new Error(`${dir}/adapter_config.json: base_model_name_or_path is empty, so the base model is unknown`);
    const baseDir = isAbsolute(base) ? base : join(dir, base);
    if (!existsSync(join(baseDir, 'config.json'))) {
      throw new Error(`${dir} is a PEFT adapter whose base model ${base} (adapter_config.json base_model_name_or_path) ${existsSync(baseDir) ? 'has no config.json' : 'does not exist'}: put the base model back there, or save the adapter merged (--merge_lora_weights)`);
    }
    let loaded: LoadedModel;
    try {
      loaded = loadPretrained(baseDir, { adapter: dir, promptLearning: opts.promptLearning });
    } catch (e) {
      throw new Error(`${dir}: loading the PEFT adapter on its base model ${baseDir}: ${(e as Error).message}`);
    }
    const vh = join(dir, VALUE_HEAD_FILE);
    if (existsSync(vh)) {
      loaded.valueHead?.dispose();
      const tensors = new Map([...readSafetensors(vh).tensors].map(([k, t]) => [k, tf.tensor(t.data, t.shape, 'float32')]));
      try {
        loaded.valueHead = headFromTensors(tensors, 0, dir);
      } catch (e) {
        loaded.model.dispose();
        throw e;
      }
    }
    return { ...loaded, dir, baseDir };
  }
  let config = readConfig(dir);
  const raw = readWeights(dir);
  // A sequence-classification checkpoint has no LM head: its backbone reads the tied embedding in its place (only
  // the hidden states matter to a reward model or critic, and nothing V×C is allocated for it).
  const seqCls = raw.has(SCORE_WEIGHT) || isSequenceClassificationConfig(config.raw);
  if (seqCls && !config.tieWordEmbeddings && !raw.has('lm_head.weight')) config = { ...config, tieWordEmbeddings: true };
  const spec = buildSpec(config);
  const expected = parameterShapes(config, spec);
  const zeroBiases = absentBiases(config);
  const weights = new Map<string, Tensor>();
  const packed = new Map<string, PackedWeight>();
  const packFormat = opts.frozenDtype && opts.frozenDtype !== 'float32' && !adapterDir ? opts.frozenDtype : null;
  const packable = packFormat ? packableWeights(spec) : new Map<string, 0 | 1>();
  const valueHead = new Map<string, Tensor>();
  const unexpected: string[] = [];
  let model: DecoderModel | null = null;
  if (packFormat) ensurePackedKernels(); // fail before reading on a backend without the kernels
  try {
    for (const [name, t] of raw) {
      const n = canonicalName(name, config);
      if (isHeadTensor(n)) {
        valueHead.set(n, tf.tensor(t.data, t.shape, 'float32'));
        continue;
      }
      const info = expected.get(n);
      if (!info && zeroBiases.has(n)) {
        // A bias-free GPT-2 is saved with zero biases for transformers; anything else would be silently dropped.
        if (t.data.some((x) => x !== 0)) throw new Error(`${dir}: tensor ${name} is not zero, but config.json has "${NO_BIAS_KEY}": false (a model without biases)`);
        continue;
      }
      if (!info) {
        // Buffers and duplicated tied heads that some savers include are not parameters.
        // (GPT-2's attn.bias and GPT-NeoX's attention.bias / masked_bias are causal-mask buffers.)
        if (/\.(attn|attention)\.(masked_)?bias$/.test(n) || (n === 'lm_head.weight' && config.tieWordEmbeddings) || /rotary_emb\.inv_freq$/.test(n)) continue;
        unexpected.push(n);
        continue;
      }
      if (t.shape.join() !== info.shape.join()) {
        throw new Error(`${dir}: tensor ${name} has shape [${t.shape}] but config.json implies [${info.shape}] (checkpoint and config disagree)`);
      }
      const axis = packable.get(n);
      if (packFormat && axis !== undefined && t.shape.length === 2 && t.data instanceof Float32Array) {
        packed.set(n, packWeight(t.data, t.shape as [number, number], packFormat, axis));
      } else weights.set(n, tf.tensor(t.data, t.shape, 'float32'));
    }
    if (unexpected.length) {
      throw new Error(`${dir}: ${unexpected.length} tensor(s) not part of a ${config.modelType} model: ${unexpected.slice(0, 5).join(', ')}`);
    }
    const missing = [...expected.keys()].filter((n) => !weights.has(n) && !packed.has(n));
    if (missing.length) throw new Error(`${dir}: checkpoint lacks ${missing.length} parameter(s): ${missing.slice(0, 5).join(', ')}`);
    model = new DecoderModel(config, weights, packed);
    const vhFile = join(dir, VALUE_HEAD_FILE);
    if (existsSync(vhFile)) {
      for (const [k, t] of readSafetensors(vhFile).tensors) valueHead.set(k, tf.tensor(t.data, t.shape, 'float32'));
    }
    let head: ValueHead | null = null;
    try {
      if (adapterDir) attachPeftAdapter(model, adapterDir, opts.promptLearning ?? false);
      if (valueHead.size) head = headFromTensors(valueHead, scoreBiasOf(config.raw, join(dir, 'config.json')), dir);
    } catch (e) {
      model.dispose();
      throw e;
    }
    model.generationDefaults = readGenerationConfig(dir);
    return { model, valueHead: head, dir };
  } finally {
    for (const t of valueHead.values()) t.dispose();
    for (const t of weights.values()) t.dispose();
    if (!model) for (const w of packed.values()) w.dispose(); // else the model owns them
  }
}

/** Applies the PEFT adapter in `dir` to `model`, whichever method it is (adapter_config.json's peft_type). */
export function attachPeftAdapter(model: DecoderModel, dir: string, promptLearning = true): void {
  if (model.lora || model.virtualTokens) throw new Error(`${dir}: the model already has an adapter; one PEFT adapter at a time`);
  const { peftType } = readPeftAdapterConfig(dir);
  if (peftType === 'LORA') {
    model.lora = loadLoraAdapter(dir, model);
    return;
  }
  if (!promptLearning) {
    throw new Error(
      `${dir} is a ${peftType} adapter, which this command cannot use (virtual tokens cannot be merged into full weights): ` +
        'apply it with inference --adapter, or continue training it with train_sft --peft',
    );
  }
  const files = readPeftAdapter(dir);
  const embedWidth = model.paramShape(model.spec.embedTokens)[1]!;
  model.virtualTokens = peftType === 'PREFIX_TUNING' ? PrefixTuningAdapter.fromPeft(files, model.config) : PromptTuningAdapter.fromPeft(files, model.config, embedWidth);
}

/** Writes the model's PEFT adapter (LoRA, prefix or prompt tuning) in PEFT's layout, naming `baseModel`. */
export function savePeftAdapter(dir: string, model: DecoderModel, baseModel = ''): void {
  if (model.lora) return saveLoraAdapter(dir, model, baseModel);
  if (!model.virtualTokens) throw new Error('savePeftAdapter: the model has no PEFT adapter');
  writePeftAdapter(dir, model.virtualTokens.peftConfig(baseModel), model.virtualTokens.peftTensors());
}

export interface PeftAdapterConfig {
  r: number;
  lora_alpha: number;
  lora_dropout?: number;
  target_modules: string[] | string;
  peft_type?: string;
  fan_in_fan_out?: boolean;
  use_dora?: boolean;
  use_rslora?: boolean;
}

/** Loads PEFT's adapter_config.json + adapter_model.safetensors for `model`. */
export function loadLoraAdapter(dir: string, model: DecoderModel): LoraAdapter {
  const cfgFile = join(dir, 'adapter_config.json');
  if (!existsSync(cfgFile)) throw new Error(`${dir}: not a PEFT adapter (no adapter_config.json)`);
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as PeftAdapterConfig;
  if (cfg.peft_type && cfg.peft_type !== 'LORA') throw new Error(`${cfgFile}: peft_type ${cfg.peft_type} is not supported (only LORA)`);
  if (cfg.use_dora) throw new Error(`${cfgFile}: DoRA adapters are not supported`);
  const lcfg: LoraConfig = { r: cfg.r, alpha: cfg.lora_alpha, dropout: cfg.lora_dropout ?? 0, targetModules: cfg.target_modules };
  const ad = new LoraAdapter(lcfg);
  if (cfg.use_rslora) (ad as { scaling: number }).scaling = cfg.lora_alpha / Math.sqrt(cfg.r);
  const file = join(dir, 'adapter_model.safetensors');
  if (!existsSync(file)) throw new Error(`${dir}: adapter_model.safetensors is missing`);
  const tensors = readSafetensors(file).tensors;
  const modules = new Set<string>();
  for (const name of tensors.keys()) {
    const m = /^base_model\.model\.(.+)\.lora_[AB](?:\.default)?\.weight$/.exec(name);
    if (!m) throw new Error(`${file}: unexpected tensor ${name} (only LoRA A/B weights are supported)`);
    modules.add(canonicalName(m[1]!, model.config));
  }
  const linears = new Map(allLinears(model.spec).map((l) => [l.module, l]));
  for (const mod of modules) {
    const raw = (suffix: string) => tensors.get(`base_model.model.${mod}.${suffix}.weight`) ?? tensors.get(`base_model.model.${mod}.${suffix}.default.weight`) ?? tensors.get(`base_model.model.${mod.replace(/^transformer\./, '')}.${suffix}.weight`);
    const a = raw('lora_A');
    const b = raw('lora_B');
    const l = linears.get(mod);
    if (!a || !b || !l) throw new Error(`${file}: adapter for ${mod} does not fit this model`);
    if (a.shape.join() !== `${cfg.r},${l.inDim}` || b.shape.join() !== `${l.outDim},${cfg.r}`) {
      throw new Error(`${file}: ${mod} lora_A [${a.shape}] / lora_B [${b.shape}] do not fit a [${l.outDim}×${l.inDim}] projection with r=${cfg.r}`);
    }
    ad.modules.set(mod, {
      A: tf.tidy(() => tf.variable(tf.tensor(a.data, a.shape, 'float32'), true, `${ad.scope}/${mod}.lora_A.weight`)),
      B: tf.tidy(() => tf.variable(tf.tensor(b.data, b.shape, 'float32'), true, `${ad.scope}/${mod}.lora_B.weight`)),
    });
  }
  return ad;
}

export function saveLoraAdapter(dir: string, model: DecoderModel, baseModel = ''): void {
  if (!model.lora) throw new Error('saveLoraAdapter: the model has no LoRA adapter');
  mkdirSync(dir, { recursive: true });
  const c = model.lora.config;
  const cfg = {
    base_model_name_or_path: baseModel, bias: 'none', fan_in_fan_out: model.config.modelType === 'gpt2', inference_mode: true,
    init_lora_weights: true, lora_alpha: c.alpha, lora_dropout: c.dropout, modules_to_save: null, peft_type: 'LORA', r: c.r,
    target_modules: c.targetModules, task_type: 'CAUSAL_LM', use_dora: false, use_rslora: false,
  };
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(cfg, null, 2) + '\n');
  writeSafetensors(join(dir, 'adapter_model.safetensors'), model.lora.peftTensors());
}

export interface SaveOptions {
  /** Stored dtype of float weights (F32 default; BF16/F16 halve the size). */
  dtype?: 'F32' | 'BF16' | 'F16';
  /**
   * A score head: the model is written as `<Family>ForSequenceClassification` (no lm_head, `score.weight`, one
   * label, `pad_token_id`), a legacy head's bias as `rlhf.score_bias`.
   */
  valueHead?: ValueHead | null;
  /** The pad id a score head's config gets when the model's config has none (the tokenizer's). */
  padTokenId?: number | null;
  /** Extra config.json fields (e.g. marking a reward model). */
  configExtra?: Record<string, unknown>;
  /** Weights to write instead of the model's own (e.g. with a LoRA adapter merged in). */
  params?: Map<string, Tensor>;
}

/**
 * Writes config.json, model.safetensors and generation_config.json (the loaded checkpoint's own, so its EOS ids and
 * sampling defaults carry over; else one derived from config.json); with a value head, in transformers'
 * sequence-classification layout (see SaveOptions.valueHead).
 */
export function savePretrained(model: DecoderModel, dir: string, opts: SaveOptions = {}): void {
  if (model.packed.size && !opts.params) {
    throw new Error(`${dir}: the model's weights are packed (${model.frozenDtype}, --frozen_dtype/--load_in_8bit) and packed weights are never saved; save an adapter, or run without packing`);
  }
  mkdirSync(dir, { recursive: true });
  const c = model.config;
  const head = opts.valueHead ?? null;
  const config = { ...c.raw, ...(opts.configExtra ?? {}) } as Record<string, unknown>;
  if (head) {
    Object.assign(config, sequenceClassificationFields(c.raw, c.modelType, c.padTokenId ?? opts.padTokenId ?? null));
    if (head.bias) {
      // transformers' score has no bias: keep ours exact here (transformers' scores are then shifted by this constant)
      const rlhf = config[RLHF_CONFIG_KEY];
      config[RLHF_CONFIG_KEY] = { ...(typeof rlhf === 'object' && rlhf !== null ? rlhf : {}), score_bias: head.biasValue() };
    }
  }
  if (opts.dtype === 'BF16') config.dtype = 'bfloat16';
  else if (opts.dtype === 'F16') config.dtype = 'float16';
  else config.dtype = 'float32';
  if (!config.architectures) config.architectures = [causalLmClass(c.modelType)];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(sortKeys(config), null, 2) + '\n');
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, v] of opts.params ?? model.params) {
    if (head && name === 'lm_head.weight') continue; // a sequence classifier has no LM head
    tensors.set(name, { shape: v.shape, data: v.dataSync() as Float32Array, dtype: opts.dtype ?? 'F32' });
  }
  for (const [name, shape] of absentBiases(c)) {
    tensors.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)), dtype: opts.dtype ?? 'F32' });
  }
  if (head) tensors.set(SCORE_WEIGHT, { shape: head.weight.shape, data: head.weight.dataSync() as Float32Array, dtype: opts.dtype ?? 'F32' });
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (c.bosTokenId !== null) gen.bos_token_id = c.bosTokenId;
  if (c.eosTokenId !== null) gen.eos_token_id = c.eosTokenId;
  if (c.padTokenId !== null) gen.pad_token_id = c.padTokenId;
  const genFile = join(dir, GENERATION_CONFIG_FILE);
  if (model.generationDefaults) writeFileSync(genFile, JSON.stringify(model.generationDefaults.raw, null, 2) + '\n');
  else if (!existsSync(genFile)) writeFileSync(genFile, JSON.stringify(gen, null, 2) + '\n');
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}
