/**
 * `--from_config`: a fresh model instead of a pretrained one (nanoGPT's "train from scratch"). The spec is either a
 * config.json path (or a directory holding one) or `family:key=value,...`, HF config keys over the family's default
 * config (`gpt2:n_layer=6,n_head=6,n_embd=384`). The vocabulary size and special token ids always come from the
 * tokenizer, so the embedding fits it; an unset position table is sized to `--max_len`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SUPPORTED_MODEL_TYPES, type ModelConfig, type ModelType } from '../models/config.js';
import { checkedConfig, parseConfigJson } from '../models/config_validation.js';
import { DecoderModel } from '../models/decoder.js';
import { buildCharTokenizerJson } from '../hub/char_tokenizer.js';
import { Tokenizer } from '../hub/tokenizer.js';

/** Each family's default config, as its transformers config class defines it (GPT-2: GPT-2 small). */
export const FAMILY_DEFAULTS: Record<ModelType, Record<string, unknown>> = {
  gpt2: {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: 50257, n_positions: 1024, n_embd: 768,
    n_layer: 12, n_head: 12, n_inner: null, activation_function: 'gelu_new', resid_pdrop: 0.1, embd_pdrop: 0.1,
    attn_pdrop: 0.1, layer_norm_epsilon: 1e-5, initializer_range: 0.02, tie_word_embeddings: true,
    bos_token_id: 50256, eos_token_id: 50256,
  },
  opt: {
    model_type: 'opt', architectures: ['OPTForCausalLM'], vocab_size: 50272, hidden_size: 768, num_hidden_layers: 12,
    num_attention_heads: 12, ffn_dim: 3072, max_position_embeddings: 2048, do_layer_norm_before: true,
    word_embed_proj_dim: 768, dropout: 0.1, attention_dropout: 0, activation_function: 'relu', init_std: 0.02,
    enable_bias: true, tie_word_embeddings: true, pad_token_id: 1, bos_token_id: 2, eos_token_id: 2,
  },
  bloom: {
    model_type: 'bloom', architectures: ['BloomForCausalLM'], vocab_size: 250880, hidden_size: 64, n_layer: 2,
    n_head: 8, layer_norm_epsilon: 1e-5, initializer_range: 0.02, hidden_dropout: 0, attention_dropout: 0,
    tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
  },
  llama: {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: 32000, hidden_size: 4096,
    intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, max_position_embeddings: 2048,
    rms_norm_eps: 1e-6, rope_theta: 10000, hidden_act: 'silu', initializer_range: 0.02, tie_word_embeddings: false,
    bos_token_id: 1, eos_token_id: 2,
  },
  qwen2: {
    model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016,
    num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, hidden_act: 'silu', max_position_embeddings: 32768,
    rms_norm_eps: 1e-6, rope_theta: 10000, use_sliding_window: false, sliding_window: 4096, max_window_layers: 28,
    attention_dropout: 0, initializer_range: 0.02, tie_word_embeddings: false,
  },
  qwen3: {
    model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], vocab_size: 151936, hidden_size: 4096, intermediate_size: 22016,
    num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 128, hidden_act: 'silu',
    max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 10000, attention_bias: false, use_sliding_window: false,
    sliding_window: 4096, max_window_layers: 28, attention_dropout: 0, initializer_range: 0.02, tie_word_embeddings: false,
  },
  mistral: {
    model_type: 'mistral', architectures: ['MistralForCausalLM'], vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336,
    num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, hidden_act: 'silu', max_position_embeddings: 131072,
    rms_norm_eps: 1e-6, rope_theta: 10000, sliding_window: 4096, attention_dropout: 0, initializer_range: 0.02,
    tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
  },
  gpt_neox: {
    model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], vocab_size: 50432, hidden_size: 6144, num_hidden_layers: 44,
    num_attention_heads: 64, intermediate_size: 24576, hidden_act: 'gelu', rotary_pct: 0.25, rotary_emb_base: 10000,
    attention_dropout: 0, hidden_dropout: 0, max_position_embeddings: 2048, initializer_range: 0.02, layer_norm_eps: 1e-5,
    use_parallel_residual: true, attention_bias: true, tie_word_embeddings: false, bos_token_id: 0, eos_token_id: 2,
  },
  phi3: {
    model_type: 'phi3', architectures: ['Phi3ForCausalLM'], vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192,
    num_hidden_layers: 32, num_attention_heads: 32, resid_pdrop: 0, embd_pdrop: 0, attention_dropout: 0, hidden_act: 'silu',
    max_position_embeddings: 4096, original_max_position_embeddings: 4096, initializer_range: 0.02, rms_norm_eps: 1e-5,
    rope_theta: 10000, partial_rotary_factor: 1, sliding_window: null, tie_word_embeddings: false, bos_token_id: 1,
    eos_token_id: 32000, pad_token_id: 32000,
  },
  gemma2: {
    model_type: 'gemma2', architectures: ['Gemma2ForCausalLM'], vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216,
    num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, hidden_activation: 'gelu_pytorch_tanh',
    max_position_embeddings: 8192, initializer_range: 0.02, rms_norm_eps: 1e-6, rope_theta: 10000, attention_bias: false,
    attention_dropout: 0, query_pre_attn_scalar: 256, sliding_window: 4096, final_logit_softcapping: 30,
    attn_logit_softcapping: 50, tie_word_embeddings: true, pad_token_id: 0, eos_token_id: 1, bos_token_id: 2,
  },
};

/** Keys a family reads that its default config leaves out; any other unknown key is a typo, not a silent no-op. */
const OPTIONAL_KEYS: Record<ModelType, string[]> = {
  gpt2: ['scale_attn_weights', 'pad_token_id', 'rlhf_bias'],
  opt: ['_remove_final_layer_norm', 'layerdrop'],
  bloom: ['apply_residual_connection_post_layernorm', 'pad_token_id'],
  llama: ['num_key_value_heads', 'head_dim', 'attention_bias', 'mlp_bias', 'rope_scaling', 'attention_dropout', 'pad_token_id'],
  qwen2: ['head_dim', 'rope_scaling', 'layer_types', 'pad_token_id', 'bos_token_id', 'eos_token_id'],
  qwen3: ['rope_scaling', 'layer_types', 'pad_token_id', 'bos_token_id', 'eos_token_id'],
  mistral: ['head_dim', 'rope_scaling', 'pad_token_id'],
  gpt_neox: ['rope_scaling', 'partial_rotary_factor', 'pad_token_id'],
  phi3: ['num_key_value_heads', 'rope_scaling', 'layer_types'],
  gemma2: ['rope_scaling', 'layer_types'],
};

const POSITION_KEYS = ['n_positions', 'max_position_embeddings'];

/** "6" -> 6, "true" -> true, "null" -> null, anything else stays a string. */
function parseValue(v: string): unknown {
  if (/^(true|false|null)$/.test(v)) return JSON.parse(v);
  if (v !== '' && Number.isFinite(Number(v))) return Number(v);
  return v;
}

/**
 * The raw config.json a `--from_config` spec describes (before the tokenizer fixes its vocabulary), and whether it
 * sets the position table size itself.
 */
export function rawConfigFromSpec(spec: string, family?: string): { raw: Record<string, unknown>; setsPositions: boolean } {
  const file = existsSync(spec) && statSync(spec).isDirectory() ? join(spec, 'config.json') : spec;
  if (existsSync(file)) {
    return { raw: parseConfigJson(file, readFileSync(file)), setsPositions: true };
  }
  const colon = spec.indexOf(':');
  const head = colon >= 0 ? spec.slice(0, colon) : spec.includes('=') ? '' : spec;
  const body = colon >= 0 ? spec.slice(colon + 1) : spec.includes('=') ? spec : '';
  const type = head || family;
  if (!type) throw new Error(`--from_config ${spec}: name the family first (e.g. gpt2:n_layer=6) or pass --model`);
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(type)) {
    throw new Error(`--from_config ${spec}: "${type}" is neither a config.json path nor a model family (${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const raw: Record<string, unknown> = { ...FAMILY_DEFAULTS[type as ModelType] };
  let setsPositions = false;
  for (const pair of body.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--from_config ${spec}: "${pair}" is not key=value`);
    const key = pair.slice(0, eq).trim();
    if (key === 'model_type') throw new Error(`--from_config ${spec}: give the family before the colon, not as model_type=`);
    if (!(key in raw) && !OPTIONAL_KEYS[type as ModelType].includes(key)) {
      const known = [...Object.keys(FAMILY_DEFAULTS[type as ModelType]), ...OPTIONAL_KEYS[type as ModelType]].filter((k) => k !== 'model_type');
      throw new Error(`--from_config ${spec}: a ${type} config has no "${key}" (its keys: ${known.join(', ')})`);
    }
    raw[key] = parseValue(pair.slice(eq + 1).trim());
    if (POSITION_KEYS.includes(key)) setsPositions = true;
  }
  return { raw, setsPositions };
}

/** The final config: vocabulary and special ids from the tokenizer, positions sized to maxLen unless set. */
export function configForTokenizer(
  spec: { raw: Record<string, unknown>; setsPositions: boolean },
  tokenizer: Tokenizer,
  maxLen: number,
  source = '--from_config',
): ModelConfig {
  const raw: Record<string, unknown> = { ...spec.raw, vocab_size: tokenizer.vocabSize };
  if (tokenizer.bosTokenId !== null) raw.bos_token_id = tokenizer.bosTokenId;
  if (tokenizer.eosTokenId !== null) raw.eos_token_id = tokenizer.eosTokenId;
  if (tokenizer.padTokenId !== null) raw.pad_token_id = tokenizer.padTokenId;
  if (!spec.setsPositions) {
    const key = raw.model_type === 'gpt2' ? 'n_positions' : 'max_position_embeddings';
    if (raw.model_type !== 'bloom') raw[key] = maxLen;
  }
  return checkedConfig(raw, source);
}

/** A freshly initialised model (HF's init, seeded). */
export function modelFromConfig(config: ModelConfig, seed: number): DecoderModel {
  return DecoderModel.fromConfig(config, seed);
}

/** `--tokenizer char`: one token per distinct character of the corpus, plus <unk> and <|endoftext|>. */
export function charTokenizerFor(texts: Iterable<string>): Tokenizer {
  let corpus = '';
  for (const t of texts) corpus += t;
  if (!corpus) throw new Error('--tokenizer char: the corpus is empty');
  return Tokenizer.fromJson(buildCharTokenizerJson(corpus), {}, 'char tokenizer');
}
