/**
 * HF checkpoint directories: load (config.json + model.safetensors, sharded or not, + optional value head and LoRA
 * adapter) and save in the layout `save_pretrained` writes, so transformers loads what we write.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { tf, type Tensor } from '../engine/tf.js';
import { readSafetensors, writeSafetensors, type LoadedTensor, type TensorToWrite } from '../hub/safetensors.js';
import { readShardedSafetensors } from '../hub/safetensors_index.js';
import type { ModelConfig } from './config.js';
import { readModelConfigFile } from './config_validation.js';
import { InputFileError } from '../hub/input_error.js';
import { DecoderModel } from './decoder.js';
import { buildSpec, parameterShapes } from './architectures.js';
import { LoraAdapter, allLinears, type LoraConfig } from './lora.js';

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
  if (config.modelType === 'gpt2' && !name.startsWith('transformer.') && !name.startsWith('lm_head') && !name.startsWith('value_head')) return `transformer.${name}`;
  if (config.modelType === 'opt' && name.startsWith('decoder.')) return `model.${name}`;
  if (config.modelType === 'bloom' && !name.startsWith('transformer.') && !name.startsWith('lm_head') && !name.startsWith('value_head')) return `transformer.${name}`;
  return name;
}

export interface LoadedModel {
  model: DecoderModel;
  /** value_head.weight [1, C] and value_head.bias [1] when the checkpoint is a reward model / critic. */
  valueHead: Map<string, Tensor> | null;
  dir: string;
}

/** Loads an HF directory; every shape is checked against config.json before any training starts. */
export function loadPretrained(dir: string, opts: { lora?: string } = {}): LoadedModel {
  // A directory holding only a PEFT adapter (a LoRA stage's output) loads its base, then the adapter.
  if (!existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'adapter_config.json'))) {
    if (opts.lora) throw new Error(`${dir} is itself a LoRA adapter; pass its base model as the model and this as the adapter`);
    const base = (JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as { base_model_name_or_path?: string }).base_model_name_or_path;
    if (!base) throw new Error(`${dir}/adapter_config.json: base_model_name_or_path is empty, so the base model is unknown`);
    const loaded = loadPretrained(isAbsolute(base) ? base : join(dir, base), { lora: dir });
    const vh = join(dir, VALUE_HEAD_FILE);
    if (existsSync(vh)) {
      loaded.valueHead = new Map([...readSafetensors(vh).tensors].map(([k, t]) => [k, tf.tensor(t.data, t.shape, 'float32')]));
    }
    return { ...loaded, dir };
  }
  const config = readConfig(dir);
  const spec = buildSpec(config);
  const expected = parameterShapes(config, spec);
  const raw = readWeights(dir);
  const weights = new Map<string, Tensor>();
  const valueHead = new Map<string, Tensor>();
  const unexpected: string[] = [];
  try {
    for (const [name, t] of raw) {
      const n = canonicalName(name, config);
      if (n.startsWith('value_head.')) {
        valueHead.set(n, tf.tensor(t.data, t.shape, 'float32'));
        continue;
      }
      const info = expected.get(n);
      if (!info) {
        // Buffers and duplicated tied heads that some savers include are not parameters.
        if (/\.attn\.(masked_)?bias$/.test(n) || (n === 'lm_head.weight' && config.tieWordEmbeddings) || /rotary_emb\.inv_freq$/.test(n)) continue;
        unexpected.push(n);
        continue;
      }
      if (t.shape.join() !== info.shape.join()) {
        throw new Error(`${dir}: tensor ${name} has shape [${t.shape}] but config.json implies [${info.shape}] (checkpoint and config disagree)`);
      }
      weights.set(n, tf.tensor(t.data, t.shape, 'float32'));
    }
    if (unexpected.length) {
      throw new Error(`${dir}: ${unexpected.length} tensor(s) not part of a ${config.modelType} model: ${unexpected.slice(0, 5).join(', ')}`);
    }
    const missing = [...expected.keys()].filter((n) => !weights.has(n));
    if (missing.length) throw new Error(`${dir}: checkpoint lacks ${missing.length} parameter(s): ${missing.slice(0, 5).join(', ')}`);
    const model = new DecoderModel(config, weights);
    const vhFile = join(dir, VALUE_HEAD_FILE);
    if (existsSync(vhFile)) {
      for (const [k, t] of readSafetensors(vhFile).tensors) valueHead.set(k, tf.tensor(t.data, t.shape, 'float32'));
    }
    if (opts.lora) model.lora = loadLoraAdapter(opts.lora, model);
    return { model, valueHead: valueHead.size ? valueHead : null, dir };
  } finally {
    for (const t of weights.values()) t.dispose();
  }
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
  valueHead?: Map<string, Tensor> | null;
  /** Extra config.json fields (e.g. marking a reward model). */
  configExtra?: Record<string, unknown>;
  /** Weights to write instead of the model's own (e.g. with a LoRA adapter merged in). */
  params?: Map<string, Tensor>;
}

/** Writes config.json, model.safetensors (value head included under `value_head.*`) and generation_config.json. */
export function savePretrained(model: DecoderModel, dir: string, opts: SaveOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  const c = model.config;
  const config = { ...c.raw, ...(opts.configExtra ?? {}) } as Record<string, unknown>;
  if (opts.dtype === 'BF16') config.dtype = 'bfloat16';
  else if (opts.dtype === 'F16') config.dtype = 'float16';
  else config.dtype = 'float32';
  if (!config.architectures) config.architectures = [{ gpt2: 'GPT2LMHeadModel', opt: 'OPTForCausalLM', bloom: 'BloomForCausalLM', llama: 'LlamaForCausalLM' }[c.modelType]];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(sortKeys(config), null, 2) + '\n');
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, v] of opts.params ?? model.params) tensors.set(name, { shape: v.shape, data: v.dataSync() as Float32Array, dtype: opts.dtype ?? 'F32' });
  if (opts.valueHead) for (const [name, t] of opts.valueHead) tensors.set(name, { shape: t.shape, data: t.dataSync() as Float32Array, dtype: opts.dtype ?? 'F32' });
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (c.bosTokenId !== null) gen.bos_token_id = c.bosTokenId;
  if (c.eosTokenId !== null) gen.eos_token_id = c.eosTokenId;
  if (c.padTokenId !== null) gen.pad_token_id = c.padTokenId;
  const genFile = join(dir, 'generation_config.json');
  if (!existsSync(genFile)) writeFileSync(genFile, JSON.stringify(gen, null, 2) + '\n');
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}
