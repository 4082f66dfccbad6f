/**
 * Model shapes the benchmark builds from config alone (no download): GPT-2 124M, OPT-125m, a small GPT-2 (6 layers,
 * 384 wide), and the shape of the demo model models/tiny-chat (LLaMA-style). Layers, width, heads and vocabulary can
 * be overridden from the command line.
 */
import { normalizeConfig, type ModelConfig } from '../models/config.js';

export const PRESETS = {
  /** GPT-2 small, as on the hub (openai-community/gpt2). */
  'gpt2-124m': { model_type: 'gpt2', n_layer: 12, n_head: 12, n_embd: 768, n_positions: 1024, vocab_size: 50257 },
  /** OPT-125m, as on the hub (facebook/opt-125m): the reward-model benchmark's shape. */
  'opt-125m': {
    model_type: 'opt', num_hidden_layers: 12, num_attention_heads: 12, hidden_size: 768, ffn_dim: 3072, word_embed_proj_dim: 768,
    max_position_embeddings: 2048, vocab_size: 50272, do_layer_norm_before: true, activation_function: 'relu', enable_bias: true,
    pad_token_id: 1, bos_token_id: 2, eos_token_id: 2,
  },
  /** OPT-350m (facebook/opt-350m): post-norm, 512-wide embeddings projected in and out; the seeds' reward model. */
  'opt-350m': {
    model_type: 'opt', num_hidden_layers: 24, num_attention_heads: 16, hidden_size: 1024, ffn_dim: 4096, word_embed_proj_dim: 512,
    max_position_embeddings: 2048, vocab_size: 50272, do_layer_norm_before: false, activation_function: 'relu', enable_bias: true,
    pad_token_id: 1, bos_token_id: 2, eos_token_id: 2,
  },
  /** OPT-1.3b (facebook/opt-1.3b). */
  'opt-1.3b': {
    model_type: 'opt', num_hidden_layers: 24, num_attention_heads: 32, hidden_size: 2048, ffn_dim: 8192, word_embed_proj_dim: 2048,
    max_position_embeddings: 2048, vocab_size: 50272, do_layer_norm_before: true, activation_function: 'relu', enable_bias: true,
    pad_token_id: 1, bos_token_id: 2, eos_token_id: 2,
  },
  /** Qwen2.5-1.5B (Qwen/Qwen2.5-1.5B): grouped kv heads (12/2), tied head, 152k vocabulary. */
  'qwen2.5-1.5b': {
    model_type: 'qwen2', num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, hidden_size: 1536,
    intermediate_size: 8960, max_position_embeddings: 32768, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1000000,
    hidden_act: 'silu', tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768,
  },
  /** A small GPT-2: 6 layers, 384 wide, GPT-2 vocabulary. */
  small: { model_type: 'gpt2', n_layer: 6, n_head: 6, n_embd: 384, n_positions: 1024, vocab_size: 50257 },
  /** The shape of models/tiny-chat: LLaMA-style, grouped kv heads, 6400-token vocabulary, tied head. */
  'tiny-chat': {
    model_type: 'llama', num_hidden_layers: 4, num_attention_heads: 6, num_key_value_heads: 3, hidden_size: 192,
    intermediate_size: 512, max_position_embeddings: 512, vocab_size: 6400, rms_norm_eps: 1e-6, rope_theta: 10000,
    hidden_act: 'silu', tie_word_embeddings: true,
  },
} as const;
export type PresetName = keyof typeof PRESETS;

export interface ShapeOverrides {
  layers?: number;
  width?: number;
  heads?: number;
  vocab?: number;
}

export function benchConfig(preset: PresetName, o: ShapeOverrides = {}): ModelConfig {
  const p = PRESETS[preset] as Record<string, unknown> | undefined;
  if (!p) throw new Error(`unknown --model "${preset}" (choose one of: ${Object.keys(PRESETS).join(', ')})`);
  const raw: Record<string, unknown> = { ...p };
  const gpt2 = p.model_type === 'gpt2';
  if (o.layers) raw[gpt2 ? 'n_layer' : 'num_hidden_layers'] = o.layers;
  if (o.width) {
    raw[gpt2 ? 'n_embd' : 'hidden_size'] = o.width;
    if (p.model_type === 'opt') Object.assign(raw, { word_embed_proj_dim: o.width, ffn_dim: 4 * o.width });
  }
  if (o.heads) {
    raw[gpt2 ? 'n_head' : 'num_attention_heads'] = o.heads;
    if (!gpt2) raw.num_key_value_heads = o.heads;
  }
  if (o.vocab) raw.vocab_size = o.vocab;
  const config = normalizeConfig(raw, `--model ${preset}`);
  // The head size is width / heads (no preset gives head_dim): a width the heads do not divide is no model.
  if ((o.width || o.heads) && !('head_dim' in raw) && config.hiddenSize % config.numHeads !== 0) {
    const width = o.width ? `--width ${o.width}` : `${preset}'s width ${config.hiddenSize}`;
    const heads = o.heads ? `--heads ${o.heads}` : `${preset}'s ${config.numHeads} heads`;
    throw new Error(`${width} is not divisible by ${heads}: each head gets width / heads channels (choose --heads dividing --width)`);
  }
  return config;
}

export function describeConfig(c: ModelConfig): string {
  const kv = c.numKvHeads !== c.numHeads ? `/${c.numKvHeads}kv` : '';
  return `${c.modelType} L${c.numLayers} C${c.hiddenSize} H${c.numHeads}${kv} V${c.vocabSize}`;
}
