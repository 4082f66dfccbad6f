/**
 * config.json → one typed description of a decoder, whatever the architecture. Hub key names differ per family
 * (`n_head`, `num_attention_heads`, …); this is the one place that maps them. The raw config is kept so a saved
 * checkpoint writes back every field HF wrote.
 */
import { parseActivation, type Activation } from './ops/activations.js';

export const SUPPORTED_MODEL_TYPES = ['gpt2', 'opt', 'bloom', 'llama'] as const;
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
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  /** OPT: pre-LN (true, most sizes) or post-LN (opt-350m). */
  preNorm: boolean;
  /** OPT: embedding width when it differs from hiddenSize (project_in/out). */
  wordEmbedDim: number;
  /** Whether attention/MLP projections carry biases (LLaMA: attention_bias / mlp_bias). */
  attentionBias: boolean;
  mlpBias: boolean;
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

export function normalizeConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const modelType = raw.model_type as string | undefined;
  if (!modelType || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new Error(`${file}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const common = {
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
      const inner = raw.n_inner;
      return {
        ...common, modelType: 'gpt2', hiddenSize: C, numLayers: num(raw, file, 'n_layer', 'num_hidden_layers'),
        numHeads: H, numKvHeads: H, headDim: C / H, intermediateSize: typeof inner === 'number' ? inner : 4 * C,
        maxPositions: num(raw, file, 'n_positions', 'max_position_embeddings'), norm: 'layernorm',
        normEps: opt(raw, 'layer_norm_epsilon', 1e-5), activation: parseActivation((raw.activation_function as string) ?? 'gelu_new'),
        positions: 'learned', ropeTheta: 0, tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm: true,
        wordEmbedDim: C, attentionBias: true, mlpBias: true, finalNorm: true,
        residDropout: opt(raw, 'resid_pdrop', 0.1), embdDropout: opt(raw, 'embd_pdrop', 0.1), attnDropout: opt(raw, 'attn_pdrop', 0.1),
      };
    }
    case 'opt': {
      const C = num(raw, file, 'hidden_size');
      const H = num(raw, file, 'num_attention_heads');
      const preNorm = raw.do_layer_norm_before !== false;
      return {
        ...common, modelType: 'opt', hiddenSize: C, numLayers: num(raw, file, 'num_hidden_layers'), numHeads: H,
        numKvHeads: H, headDim: C / H, intermediateSize: num(raw, file, 'ffn_dim'),
        maxPositions: num(raw, file, 'max_position_embeddings'), norm: 'layernorm', normEps: 1e-5,
        activation: parseActivation((raw.activation_function as string) ?? 'relu'), positions: 'learned_offset2',
        ropeTheta: 0, tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm,
        wordEmbedDim: opt(raw, 'word_embed_proj_dim', C), attentionBias: raw.enable_bias !== false,
        mlpBias: raw.enable_bias !== false, finalNorm: preNorm && raw._remove_final_layer_norm !== true,
        residDropout: opt(raw, 'dropout', 0.1), embdDropout: opt(raw, 'dropout', 0.1), attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
    case 'bloom': {
      const C = num(raw, file, 'hidden_size', 'n_embed');
      const H = num(raw, file, 'n_head', 'num_attention_heads');
      if (raw.apply_residual_connection_post_layernorm === true) {
        throw new Error(`${file}: BLOOM with apply_residual_connection_post_layernorm=true is not supported`);
      }
      return {
        ...common, modelType: 'bloom', hiddenSize: C, numLayers: num(raw, file, 'n_layer', 'num_hidden_layers'),
        numHeads: H, numKvHeads: H, headDim: C / H, intermediateSize: 4 * C, maxPositions: Infinity,
        norm: 'layernorm', normEps: opt(raw, 'layer_norm_epsilon', 1e-5), activation: 'gelu_new', positions: 'alibi',
        ropeTheta: 0, tieWordEmbeddings: raw.tie_word_embeddings !== false, preNorm: true, wordEmbedDim: C,
        attentionBias: true, mlpBias: true, finalNorm: true,
        residDropout: opt(raw, 'hidden_dropout', 0), embdDropout: 0, attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
    case 'llama': {
      const C = num(raw, file, 'hidden_size');
      const H = num(raw, file, 'num_attention_heads');
      const rope = (raw.rope_parameters ?? raw.rope_scaling ?? null) as Record<string, unknown> | null;
      if (rope && rope.rope_type && rope.rope_type !== 'default') {
        throw new Error(`${file}: rope_type "${String(rope.rope_type)}" is not supported (only "default")`);
      }
      const theta = typeof rope?.rope_theta === 'number' ? rope.rope_theta : opt(raw, 'rope_theta', 10000);
      return {
        ...common, modelType: 'llama', hiddenSize: C, numLayers: num(raw, file, 'num_hidden_layers'), numHeads: H,
        numKvHeads: opt(raw, 'num_key_value_heads', H), headDim: opt(raw, 'head_dim', C / H),
        intermediateSize: num(raw, file, 'intermediate_size'), maxPositions: opt(raw, 'max_position_embeddings', 2048),
        norm: 'rmsnorm', normEps: opt(raw, 'rms_norm_eps', 1e-6), activation: parseActivation((raw.hidden_act as string) ?? 'silu'),
        positions: 'rotary', ropeTheta: theta, tieWordEmbeddings: raw.tie_word_embeddings === true, preNorm: true,
        wordEmbedDim: C, attentionBias: raw.attention_bias === true, mlpBias: raw.mlp_bias === true, finalNorm: true,
        residDropout: 0, embdDropout: 0, attnDropout: opt(raw, 'attention_dropout', 0),
      };
    }
  }
}
