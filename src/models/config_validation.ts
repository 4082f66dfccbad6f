/**
 * Sanity bounds on a config.json's numbers, checked before anything is built: a hostile or mistyped config
 * (`n_layer` 1e9, `n_head` 0, a width the heads do not divide) gets an error naming the file and the field instead of
 * a heap crash or a raw tensor-library error deep inside model construction.
 *
 * It works on the normalized config (one name per quantity, whatever the family), so a new family is covered as soon
 * as normalizeConfig maps it; `FIELD_KEYS` says which raw config.json keys each quantity may come from, so errors
 * quote the key the file actually uses. The limits are generous (several times the largest released models) and
 * only refuse numbers no real checkpoint has.
 */
import { readFileSync } from 'node:fs';
import { InputFileError, fileReadError } from '../hub/input_error.js';
import { MAX_LAYERS, normalizeConfig, type ModelConfig } from './config.js';

/** Upper bounds, inclusive. */
export const CONFIG_LIMITS = {
  vocabSize: 1 << 23, // 8.4M tokens (the largest vocabularies today are ~256k)
  hiddenSize: 1 << 17, // 131072 (405B-class models use 16384)
  numLayers: MAX_LAYERS,
  numHeads: 4096,
  headDim: 8192,
  intermediateSize: 1 << 20,
  maxPositions: 1 << 26, // 67M positions (10M-context models exist)
  /** Estimated parameter count: 10 trillion. */
  parameters: 1e13,
} as const;

/** The config.json keys each normalized quantity is read from, across families (first present one is quoted). */
export const FIELD_KEYS: Record<string, string[]> = {
  vocabSize: ['vocab_size', 'padded_vocab_size'],
  hiddenSize: ['n_embd', 'hidden_size', 'n_embed', 'd_model'],
  numLayers: ['n_layer', 'num_hidden_layers', 'num_layers'],
  numHeads: ['n_head', 'num_attention_heads'],
  numKvHeads: ['num_key_value_heads', 'multi_query_group_num', 'num_kv_heads'],
  headDim: ['head_dim'],
  intermediateSize: ['n_inner', 'intermediate_size', 'ffn_dim', 'ffn_hidden_size'],
  maxPositions: ['n_positions', 'max_position_embeddings', 'n_ctx', 'seq_length'],
  wordEmbedDim: ['word_embed_proj_dim'],
  normEps: ['layer_norm_epsilon', 'layer_norm_eps', 'rms_norm_eps'],
  ropeTheta: ['rope_parameters.rope_theta', 'rope_scaling.rope_theta', 'rope_theta'],
  residDropout: ['resid_pdrop', 'dropout', 'hidden_dropout'],
  embdDropout: ['embd_pdrop', 'dropout'],
  attnDropout: ['attn_pdrop', 'attention_dropout'],
};

/** The config.json key that gave `field` (or the internal name when the value is a default or derived). */
function keyOf(config: ModelConfig, field: string): string {
  return FIELD_KEYS[field]?.find((k) => hasPath(config.raw, k)) ?? field;
}

/** Whether a dotted key path ("rope_parameters.rope_theta") is present. */
function hasPath(raw: Record<string, unknown>, key: string): boolean {
  let at: unknown = raw;
  for (const part of key.split('.')) {
    if (typeof at !== 'object' || at === null || !(part in at)) return false;
    at = (at as Record<string, unknown>)[part];
  }
  return true;
}

/**
 * Throws an InputFileError naming `file` and the offending config.json key when a number is out of bounds or the
 * sizes do not fit together (heads dividing the width, KV heads dividing the heads).
 */
export function validateModelConfig(config: ModelConfig, file: string): void {
  const fail = (field: string, why: string): never => {
    throw new InputFileError(file, `field "${keyOf(config, field)}" ${why}`);
  };
  const count = (field: keyof typeof CONFIG_LIMITS | 'numKvHeads' | 'wordEmbedDim', limit: number): number => {
    const v = (config as unknown as Record<string, unknown>)[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail(field, `is ${show(v)}: it must be a positive integer`);
    if ((v as number) > limit) fail(field, `is ${v}, beyond the sane limit of ${limit}: is the file corrupt?`);
    return v as number;
  };
  count('vocabSize', CONFIG_LIMITS.vocabSize);
  const width = count('hiddenSize', CONFIG_LIMITS.hiddenSize);
  const layers = count('numLayers', CONFIG_LIMITS.numLayers);
  const heads = count('numHeads', CONFIG_LIMITS.numHeads);
  const kvHeads = count('numKvHeads', CONFIG_LIMITS.numHeads);
  count('intermediateSize', CONFIG_LIMITS.intermediateSize);
  count('wordEmbedDim', CONFIG_LIMITS.hiddenSize);
  // A head size derived as width / heads must come out whole; an explicit head_dim need not divide anything.
  if (!('head_dim' in config.raw) && width % heads !== 0) {
    fail('hiddenSize', `is ${width}, which ${heads} attention heads ("${keyOf(config, 'numHeads')}") do not divide`);
  }
  count('headDim', CONFIG_LIMITS.headDim);
  if (heads % kvHeads !== 0) {
    fail('numKvHeads', `is ${kvHeads}, which does not divide the ${heads} attention heads ("${keyOf(config, 'numHeads')}")`);
  }
  // ALiBi needs no position table (Infinity); every other scheme needs a finite one.
  if (config.maxPositions !== Infinity) count('maxPositions', CONFIG_LIMITS.maxPositions);
  else if (config.positions !== 'alibi') fail('maxPositions', 'is missing: this family needs a position limit');

  const real = (field: string, v: number, ok: (x: number) => boolean, what: string): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(field, `is ${show(v)}: it must be ${what}`);
  };
  real('normEps', config.normEps, (x) => x > 0 && x < 1, 'a small positive number');
  if (config.rope) real('ropeTheta', config.rope.theta, (x) => x > 0, 'a positive number');
  for (const d of ['residDropout', 'embdDropout', 'attnDropout'] as const) real(d, config[d], (x) => x >= 0 && x < 1, 'a probability in [0, 1)');

  const params = estimateParameters(config);
  if (params > CONFIG_LIMITS.parameters) {
    throw new InputFileError(file, `describes a model of ~${params.toExponential(1)} parameters (${layers} layers of width ${width}): beyond any real checkpoint; is the file corrupt?`);
  }
}

/** Rough parameter count (embeddings, attention, MLP), only to refuse absurd configs before allocating. */
export function estimateParameters(c: ModelConfig): number {
  const attention = c.hiddenSize * c.headDim * (2 * c.numHeads + 2 * c.numKvHeads);
  const mlp = 3 * c.hiddenSize * c.intermediateSize;
  const embeddings = c.vocabSize * c.wordEmbedDim * (c.tieWordEmbeddings ? 1 : 2);
  return embeddings + c.numLayers * (attention + mlp);
}

function show(v: unknown): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v) ?? 'missing';
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** config.json's text → its object: UTF-8 (a BOM allowed), valid JSON, an object. */
export function parseConfigJson(file: string, bytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new InputFileError(file, 'not valid UTF-8 text');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new InputFileError(file, `invalid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InputFileError(file, `expected a JSON object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`);
  }
  return raw as Record<string, unknown>;
}

/**
 * A normalized, validated config from raw config.json fields. normalizeConfig's own refusals (an unknown
 * model_type, a missing field) come back as InputFileErrors naming `file`; then the numbers are checked.
 */
export function checkedConfig(raw: Record<string, unknown>, file: string): ModelConfig {
  let config: ModelConfig;
  try {
    config = normalizeConfig(raw, file);
  } catch (e) {
    // TypeError and friends would be bugs of normalizeConfig on odd input: let them through, unmasked.
    if (!(e instanceof Error) || e.constructor !== Error) throw e;
    const prefix = `${file}: `;
    throw new InputFileError(file, e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message);
  }
  validateModelConfig(config, file);
  return config;
}

/** Reads, normalizes and validates a config.json. */
export function readModelConfigFile(file: string): ModelConfig {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fileReadError(file, e);
  }
  return checkedConfig(parseConfigJson(file, bytes), file);
}
