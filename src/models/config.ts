/**
 * config.json → one typed description of a decoder, whatever the architecture. Hub key names differ per family
 * (`n_head`, `num_attention_heads`, …); this is the one place that maps them. The raw config is kept so a saved
 * checkpoint writes back every field HF wrote.
 */
import { InputFileError } from '../hub/input_error.js';
import { parseActivation, type Activation } from './ops/activations.js';
import { parseRope, type RopeSpec } from './ops/rope.js';

export const SUPPORTED_MODEL_TYPES = ['gpt2', 'opt', 'bloom', 'llama', 'qwen2', 'qwen3', 'mistral', 'gpt_neox', 'phi3', 'gemma2'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface ModelConfig {
  modelType: ModelType;
  vocabSize: number;
  /** Width of the residual stream (C). */
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads (LLaMA grouped-query attention); equals numHeads elsewhere. */
  numKvHeads: number;
  headDim: number;
  /** Width of the MLP's inner layer. */
  intermediateSize: number;
  /** Longest sequence the position table covers (ALiBi has no table: Infinity). */
  maxPositions: number;
  norm: 'layernorm' | 'rmsnorm';
  normEps: number;
  activation: Activation;
  positions: 'learned' | 'learned_offset2' | 'alibi' | 'rotary';
  /** Rotary settings when positions is 'rotary' (frequencies, rotated dimensions, scaling). */
  rope: RopeSpec | null;
  tieWordEmbeddings: boolean;
  /** OPT: pre-LN (true, most sizes) or post-LN (opt-350m). */
  preNorm: boolean;
  /** OPT: embedding width when it differs from hiddenSize (project_in/out). */
  wordEmbedDim: number;
  /** Whether the q/k/v projections carry biases (LLaMA: attention_bias; Qwen2: always). */
  attentionBias: boolean;
  /** Whether the attention output projection carries a bias (Qwen2: no, although q/k/v do). */
  attnOutputBias: boolean;
  mlpBias: boolean;
  /** Whether LayerNorms carry a bias (default true; GPT-2 with `rlhf_bias: false` has none, see below). */
  normBias?: boolean;
  /** Qwen3: RMSNorm over each head of q and k (before rotary). */
  qkNorm: boolean;
  /** Sliding attention window per layer (Mistral, Qwen2 with use_sliding_window, Gemma 2's alternate layers); null: full. */
  layerWindows: (number | null)[];
  /** GPT-NeoX: x + attn(ln1(x)) + mlp(ln2(x)) instead of two residual steps. */
  parallelResidual: boolean;
  /** Gemma: token embeddings multiplied by √hidden_size. */
  embedScale: number;
  /** Gemma: RMSNorm weights stored as offsets from 1 (the norm multiplies by 1 + w). */
  normWeightOffset: number;
  /** Gemma 2: a norm on the attention output and on the MLP output too, before each residual add. */
  sandwichNorm: boolean;
  /** Factor of q·kᵀ: 1/√head_dim, Gemma 2: query_pre_attn_scalar^−½. */
  attnScale: number;
  /** Gemma 2: attention scores and final logits bounded as c·tanh(x/c); null: off. */
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** OPT: whether the decoder has a final LayerNorm. */
  finalNorm: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  /** Dropout probabilities used in training mode (0 in eval). */
  residDropout: number;
  embdDropout: number;
  attnDropout: number;
  /** The config.json this came from, written back on save. */
  raw: Record<string, unknown>;
}

function num(raw: Record<string, unknown>, file: string, ...keys: string[]): number {
  for (const k of keys) {
    const v = raw[k];
    if (typeof v === 'number') return v;
  }
  throw new Error(`${file}: missing numeric field ${keys.map((k) => `"${k}"`).join(' or ')}`);
}

function opt(raw: Record<string, unknown>, key: string, fallback: number): number {
  const v = raw[key];
  return typeof v === 'number' ? v : fallback;
}

function tokenId(raw: Record<string, unknown>, key: string): number | null {
  const v = raw[key];
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0] as number;
  return null;
}

/**
 * Config fields that switch a feature on in some families. A family that does not implement one refuses it when it
 * is set to anything but its neutral value, instead of silently computing something else.
 */
const FEATURE_FIELDS: Record<string, (v: unknown) => boolean> = {
  sliding_window: (v) => v !== null && v !== undefined,
  use_sliding_window: (v) => v === true,
  attn_logit_softcapping: (v) => v !== null && v !== undefined,
  final_logit_softcapping: (v) => v !== null && v !== undefined,
  query_pre_attn_scalar: (v) => v !== null && v !== undefined,
  use_parallel_residual: (v) => v === true,
  rotary_pct: (v) => v !== undefined && v !== 1,
  partial_rotary_factor: (v) => v !== undefined && v !== null && v !== 1,
  use_bidirectional_attention: (v) => v === true,
  mlp_bias: (v) => v === true,
  rlhf_bias: (v) => v === false,
};

/**
 * `rlhf_bias: false` in a GPT-2 config.json: no biases in any Linear or LayerNorm (nanoGPT's bias=False). GPT2Config
 * has no such switch, so the key is this project's; transformers ignores it and the saved checkpoint carries zero
 * biases in their place (savePretrained), so GPT2LMHeadModel loads exactly the same function.
 */
export const NO_BIAS_KEY = 'rlhf_bias';

/** A GPT-2 config without biases (`rlhf_bias: false`); any other value of the key is an error naming it. */
export function gpt2WithoutBias(raw: Record<string, unknown>, file = 'config.json'): boolean {
  const v = raw[NO_BIAS_KEY];
  if (v !== undefined && typeof v !== 'boolean') throw new Error(`${file}: "${NO_BIAS_KEY}" must be true or false, got ${JSON.stringify(v)}`);
  return v === false;
}

/** The feature fields each family honours (see FEATURE_FIELDS). */
const HONOURED: Record<ModelType, string[]> = {
  gpt2: ['rlhf_bias'], opt: [], bloom: [],
  llama: ['mlp_bias'],
  qwen2: ['sliding_window', 'use_sliding_window'],
  qwen3: ['sliding_window', 'use_sliding_window'],
  mistral: ['sliding_window'],
  gpt_neox: ['use_parallel_residual', 'rotary_pct', 'partial_rotary_factor'],
  phi3: ['sliding_window', 'partial_rotary_factor'],
  gemma2: ['sliding_window', 'attn_logit_softcapping', 'final_logit_softcapping', 'query_pre_attn_scalar'],
};

function refuseForeignFeatures(raw: Record<string, unknown>, file: string, modelType: ModelType): void {
  for (const [key, active] of Object.entries(FEATURE_FIELDS)) {
    if (key in raw && active(raw[key]) && !HONOURED[modelType].includes(key)) {
      throw new Error(`${file}: "${key}": ${JSON.stringify(raw[key])} is not implemented for model_type ${modelType} (only: ${Object.entries(HONOURED).filter(([, f]) => f.includes(key)).map(([m]) => m).join(', ') || 'none'})`);
    }
  }
}

/**
 * Sliding window of each layer. `layer_types` (transformers 5) names each layer full_attention or
 * sliding_attention; without it: Qwen2/3 slide from layer max_window_layers on (when use_sliding_window), Gemma 2
 * on even layers, Mistral/Phi-3 on all (whenever sliding_window is set).
 */
function layerWindows(raw: Record<string, unknown>, file: string, modelType: ModelType, numLayers: number, window: number | null): (number | null)[] {
  const types = raw.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== numLayers) throw new Error(`${file}: "layer_types" has ${types.length} entries for ${numLayers} layers`);
    return types.map((t, i) => {
      if (t === 'full_attention') return null;
      if (t === 'sliding_attention') {
        if (window === null) throw new Error(`${file}: "layer_types[${i}]" is sliding_attention but no sliding window is set ("sliding_window"${modelType.startsWith('qwen') ? ' with "use_sliding_window": true' : ''})`);
        return window;
      }
      throw new Error(`${file}: "layer_types[${i}]" ${JSON.stringify(t)} is not supported (full_attention, sliding_attention)`);
    });
  }
  if (types !== undefined && types !== null) throw new Error(`${file}: "layer_types" must be a list`);
  checkLayerCount(numLayers, raw, file);
  const all = Array.from({ length: numLayers }, (_, i) => i);
  if (window === null) return all.map(() => null);
  if (modelType === 'qwen2' || modelType === 'qwen3') {
    const from = opt(raw, 'max_window_layers', numLayers);
    return all.map((i) => (i >= from ? window : null));
  }
  if (modelType === 'gemma2') return all.map((i) => ((i + 1) % 2 ? window : null));
  return all.map(() => window);
}

function positiveInt(raw: Record<string, unknown>, file: string, key: string): number | null {
  const v = raw[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`${file}: "${key}" must be a positive integer or null (got ${JSON.stringify(v)})`);
  return v;
}

function softcap(raw: Record<string, unknown>, file: string, key: string): number | null {
  const v = raw[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !(v > 0)) throw new Error(`${file}: "${key}" must be a positive number or null (got ${JSON.stringify(v)})`);
  return v;
}

/** More layers than any real checkpoint has; config_validation.ts refuses it too, with the key named. */
export const MAX_LAYERS = 1024;

/**
 * Refuses a layer count that per-layer tables cannot be built for, before anything is allocated, in the words
 * config_validation.ts uses for every other count.
 */
function checkLayerCount(numLayers: number, raw: Record<string, unknown>, file: string): void {
  const key = ['n_layer', 'num_hidden_layers', 'num_layers'].find((k) => k in raw) ?? 'num_hidden_layers';
  if (!Number.isSafeInteger(numLayers) || numLayers < 1) throw new InputFileError(file, `field "${key}" is ${JSON.stringify(numLayers)}: it must be a positive integer`);
  if (numLayers > MAX_LAYERS) throw new InputFileError(file, `field "${key}" is ${numLayers}, beyond the sane limit of ${MAX_LAYERS}: is the file corrupt?`);
}

type Common = Pick<ModelConfig, 'raw' | 'bosTokenId' | 'eosTokenId' | 'padTokenId' | 'vocabSize'>;

/** What the four older families share among the newer fields: none of the newer features. */
function plainTraits(numLayers: number, headDim: number, raw: Record<string, unknown>, file: string) {
  checkLayerCount(numLayers, raw, file);
  return {
    rope: null, qkNorm: false, layerWindows: Array.from({ length: numLayers }, () => null), parallelResidual: false,
    embedScale: 1, normWeightOffset: 0, sandwichNorm: false, attnScale: 1 / Math.sqrt(headDim), attnSoftcap: null, finalSoftcap: null,
  };
}

/**
 * The rotary, RMSNorm, gated-MLP families (LLaMA, Qwen2/3, Mistral, Phi-3, Gemma 2), each key's default as that
 * family's transformers config class has it.
 */
function rotaryDecoder(raw: Record<string, unknown>, file: string, common: Common, modelType: ModelType): ModelConfig {
  const C = num(raw, file, 'hidden_size');
  const H = num(raw, file, 'num_attention_heads');
  const L = num(raw, file, 'num_hidden_layers');
  const defaultHeadDim = { qwen3: 128, gemma2: 256 }[modelType as string] ?? C / H;
  const hd = raw.head_dim === null || raw.head_dim === undefined ? defaultHeadDim : num(raw, file, 'head_dim');
  const maxPositions = opt(raw, 'max_position_embeddings', { llama: 2048, gemma2: 8192, phi3: 4096, mistral: 131072 }[modelType as string] ?? 32768);
  const gemma = modelType === 'gemma2';
  const partialAllowed = modelType === 'phi3';
  const rope = parseRope(raw, file, hd, maxPositions, { theta: 10000 });
  if (!partialAllowed && rope.dim !== hd) throw new Error(`${file}: "partial_rotary_factor" is not implemented for model_type ${modelType}`);
  // Qwen2/3 slide only with use_sliding_window; Mistral's config class defaults the window to 4096 when the key is absent.
  let window = positiveInt(raw, file, 'sliding_window');
  if (modelType === 'mistral' && !('sliding_window' in raw)) window = 4096;
  if (gemma && !('sliding_window' in raw)) window = 4096;
  if ((modelType === 'qwen2' || modelType === 'qwen3') && raw.use_sliding_window !== true) window = null;
  if (modelType === 'llama') window = null;
  const biasQkv = modelType === 'qwen2' ? true : ['llama', 'qwen3', 'gemma2'].includes(modelType) && raw.attention_bias === true;
  const biasOut = modelType === 'qwen2' ? false : biasQkv;
  const act = (gemma ? raw.hidden_activation ?? raw.hidden_act ?? 'gelu_pytorch_tanh' : raw.hidden_act ?? 'silu') as string;
  return {
    ...common, modelType, hiddenSize: C, numLayers: L, numHeads: H, numKvHeads: opt(raw, 'num_key_value_heads', H), headDim: hd,
    intermediateSize: num(raw, file, 'intermediate_size'), maxPositions, norm: 'rmsnorm',
    normEps: opt(raw, 'rms_norm_eps', modelType === 'phi3' ? 1e-5 : 1e-6), activation: parseActivation(act), positions: 'rotary', rope,
    tieWordEmbeddings: typeof raw.tie_word_embeddings === 'boolean' ? raw.tie_word_embeddings : gemma, preNorm: true,
    wordEmbedDim: C, attentionBias: biasQkv, attnOutputBias: biasOut, mlpBias: modelType === 'llama' && raw.mlp_bias === true, finalNorm: true,
    qkNorm: modelType === 'qwen3', layerWindows: layerWindows(raw, file, modelType, L, window), parallelResidual: false,
    embedScale: gemma ? Math.sqrt(C) : 1, normWeightOffset: gemma ? 1 : 0, sandwichNorm: gemma,
    attnScale: gemma ? Math.pow(opt(raw, 'query_pre_attn_scalar', 256), -0.5) : 1 / Math.sqrt(hd),
    attnSoftcap: gemma ? ('attn_logit_softcapping' in raw ? softcap(raw, file, 'attn_logit_softcapping') : 50) : null,
    finalSoftcap: gemma ? ('final_logit_softcapping' in raw ? softcap(raw, file, 'final_logit_softcapping') : 30) : null,
    residDropout: modelType === 'phi3' ? opt(raw, 'resid_pdrop', 0) : 0, embdDropout: modelType === 'phi3' ? opt(raw, 'embd_pdrop', 0) : 0,
    attnDropout: opt(raw, 'attention_dropout', 0),
  };
}

/** Every end-of-sequence id config.json names (eos_token_id may be a list, e.g. Llama 3.1's three). */
export function configEosTokenIds(c: ModelConfig): number[] {
  const v = c.raw.eos_token_id;
  if (typeof v === 'number') return [v];
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
}

export function normalizeConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const modelType = raw.model_type as string | undefined;
  if (!modelType || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new Error(`${file}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  refuseForeignFeatures(raw, file, modelType as ModelType);
  const common: Common = {
    raw,
    bosTokenId: tokenId(raw, 'bos_token_id'),
    eosTokenId: tokenId(raw, 'eos_token_id'),
    padTokenId: tokenId(raw, 'pad_token_id'),
    vocabSize: num(raw, file, 'vocab_size'),
  };
  switch (modelType as ModelType) {
    case 'gpt2': {
      const C = num(raw, file, 'n_embd', 'hidden_size');
      const H = num(raw, file, 'n_head', 'num_attention_heads');
      const L = num(raw, file, 'n_layer', 'num_hidden_layers');
      const inner = raw.n_inner;
      const bias = !gpt2WithoutBias(raw, file);
      return {
        ...common, ...plainTraits(L, C / H, raw, file), modelType: 'gpt2', hiddenSize: C, numLayers: L,
        numHeads: H, numKvHeads: H, headDim: C / H, intermediateSize: typeof inner === 'number' ? inner : 4 * C,
        maxPositions: num(raw, file, 'n_positions', 'max_position_embeddings'), norm: 'layernorm',
        normEps: opt(raw, 'layer_norm_epsilon', 1e-5), activation: parseActivation((raw.activation_function as string) ?? 'gelu_new'),
        positions: 'learned', tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm: true,
        wordEmbedDim: C, attentionBias: bias, attnOutputBias: bias, mlpBias: bias, normBias: bias, finalNorm: true,
        residDropout: opt(raw, 'resid_pdrop', 0.1), embdDropout: opt(raw, 'embd_pdrop', 0.1), attnDropout: opt(raw, 'attn_pdrop', 0.1),
      };
    }
    case 'opt': {
      const C = num(raw, file, 'hidden_size');
      const H = num(raw, file, 'num_attention_heads');
      const L = num(raw, file, 'num_hidden_layers');
      const preNorm = raw.do_layer_norm_before !== false;
      return {
        ...common, ...plainTraits(L, C / H, raw, file), modelType: 'opt', hiddenSize: C, numLayers: L, numHeads: H,
        numKvHeads: H, headDim: C / H, intermediateSize: num(raw, file, 'ffn_dim'),
        maxPositions: num(raw, file, 'max_position_embeddings'), norm: 'layernorm', normEps: 1e-5,
        activation: parseActivation((raw.activation_function as string) ?? 'relu'), positions: 'learned_offset2',
        tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm,
        wordEmbedDim: opt(raw, 'word_embed_proj_dim', C), attentionBias: raw.enable_bias !== false, attnOutputBias: raw.enable_bias !== false,
        mlpBias: raw.enable_bias !== false, finalNorm: preNorm && raw._remove_final_layer_norm !== true,
        residDropout: opt(raw, 'dropout', 0.1), embdDropout: opt(raw, 'dropout', 0.1), attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
    case 'bloom': {
      const C = num(raw, file, 'hidden_size', 'n_embed');
      const H = num(raw, file, 'n_head', 'num_attention_heads');
      const L = num(raw, file, 'n_layer', 'num_hidden_layers');
      if (raw.apply_residual_connection_post_layernorm === true) {
        throw new Error(`${file}: BLOOM with apply_residual_connection_post_layernorm=true is not supported`);
      }
      return {
        ...common, ...plainTraits(L, C / H, raw, file), modelType: 'bloom', hiddenSize: C, numLayers: L,
        numHeads: H, numKvHeads: H, headDim: C / H, intermediateSize: 4 * C, maxPositions: Infinity,
        norm: 'layernorm', normEps: opt(raw, 'layer_norm_epsilon', 1e-5), activation: 'gelu_new', positions: 'alibi',
        tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm: true, wordEmbedDim: C,
        attentionBias: true, attnOutputBias: true, mlpBias: true, finalNorm: true,
        residDropout: opt(raw, 'hidden_dropout', 0), embdDropout: 0, attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
    case 'gpt_neox': {
      const C = num(raw, file, 'hidden_size');
      const H = num(raw, file, 'num_attention_heads');
      const L = num(raw, file, 'num_hidden_layers');
      const maxPositions = opt(raw, 'max_position_embeddings', 2048);
      const bias = raw.attention_bias !== false;
      return {
        ...common, ...plainTraits(L, C / H, raw, file), modelType: 'gpt_neox', hiddenSize: C, numLayers: L, numHeads: H, numKvHeads: H,
        headDim: C / H, intermediateSize: opt(raw, 'intermediate_size', 4 * C), maxPositions, norm: 'layernorm',
        normEps: opt(raw, 'layer_norm_eps', 1e-5), activation: parseActivation((raw.hidden_act as string) ?? 'gelu'), positions: 'rotary',
        rope: parseRope(raw, file, C / H, maxPositions, { theta: 10000, partialRotary: 0.25 }),
        tieWordEmbeddings: raw.tie_word_embeddings === true, preNorm: true, wordEmbedDim: C, attentionBias: bias,
        attnOutputBias: bias, mlpBias: true, finalNorm: true, parallelResidual: raw.use_parallel_residual !== false,
        residDropout: opt(raw, 'hidden_dropout', 0), embdDropout: 0, attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
    default:
      return rotaryDecoder(raw, file, common, modelType as ModelType);
  }
}
