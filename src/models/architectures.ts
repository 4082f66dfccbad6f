/**
 * Per-architecture layout as data: which HF parameter names a model has, their shapes, and how the decoder core
 * should wire them. The decoder (decoder.ts) reads only this description, never the model_type.
 */
import type { ModelConfig, ModelType } from './config.js';
import type { WeightLayout } from './ops/linear.js';

export interface LinearSpec {
  /** Module path as PEFT names it (LoRA targets match its last component), e.g. `transformer.h.0.attn.c_attn`. */
  module: string;
  layout: WeightLayout;
  inDim: number;
  outDim: number;
  bias: boolean;
}

export interface NormSpec {
  weight: string;
  bias: string | null;
}

export interface LayerSpec {
  /** Norm before attention and before the MLP (Gemma 2: input_layernorm and pre_feedforward_layernorm). */
  ln1: NormSpec;
  ln2: NormSpec;
  /** Gemma 2: norms of the attention and MLP outputs, before their residual adds. */
  postAttnNorm: NormSpec | null;
  postMlpNorm: NormSpec | null;
  /**
   * `fused_concat`: one product whose output is q | k | v contiguous (GPT-2's c_attn, Phi-3's qkv_proj);
   * `fused_per_head`: output laid out per head as (H, 3, hs) (BLOOM, GPT-NeoX query_key_value).
   * `qNorm`/`kNorm`: Qwen3's RMSNorm over each head of q and k.
   */
  attn: (
    | { kind: 'fused_concat' | 'fused_per_head'; qkv: LinearSpec; o: LinearSpec }
    | { kind: 'separate'; q: LinearSpec; k: LinearSpec; v: LinearSpec; o: LinearSpec }
  ) & { qNorm: NormSpec | null; kNorm: NormSpec | null };
  /** `gated_fused`: Phi-3's gate_up_proj, whose output is gate | up. */
  mlp:
    | { kind: 'plain'; fcIn: LinearSpec; fcOut: LinearSpec }
    | { kind: 'gated'; gate: LinearSpec; up: LinearSpec; down: LinearSpec }
    | { kind: 'gated_fused'; gateUp: LinearSpec; down: LinearSpec };
  /** Sliding attention window of this layer (keys within the last W positions); null: full causal attention. */
  window: number | null;
}

export interface ModelSpec {
  embedTokens: string;
  embedPositions: string | null;
  embedNorm: NormSpec | null;
  projectIn: LinearSpec | null;
  projectOut: LinearSpec | null;
  layers: LayerSpec[];
  finalNorm: NormSpec | null;
  /** The weight [V, C] the logits are computed with: the token embedding when tied. */
  lmHead: string;
}

function lin(module: string, layout: WeightLayout, inDim: number, outDim: number, bias: boolean): LinearSpec {
  return { module, layout, inDim, outDim, bias };
}

function ln(prefix: string, bias = true): NormSpec {
  return { weight: `${prefix}.weight`, bias: bias ? `${prefix}.bias` : null };
}

/** transformers' class-name stem of each family (`<stem>ForCausalLM`, `<stem>ForSequenceClassification`). */
export const HF_CLASS_STEM: Record<ModelType, string> = {
  gpt2: 'GPT2', opt: 'OPT', bloom: 'Bloom', llama: 'Llama', qwen2: 'Qwen2', qwen3: 'Qwen3', mistral: 'Mistral',
  gpt_neox: 'GPTNeoX', phi3: 'Phi3', gemma2: 'Gemma2',
};

/** The architectures entry of a causal-LM checkpoint (GPT-2's predates the ForCausalLM naming). */
export function causalLmClass(t: ModelType): string {
  return t === 'gpt2' ? 'GPT2LMHeadModel' : `${HF_CLASS_STEM[t]}ForCausalLM`;
}

export function buildSpec(c: ModelConfig): ModelSpec {
  const C = c.hiddenSize;
  const I = c.intermediateSize;
  const kvDim = c.numKvHeads * c.headDim;
  const qDim = c.numHeads * c.headDim;
  const L = Array.from({ length: c.numLayers }, (_, i) => i);
  switch (c.modelType) {
    case 'gpt2': {
      // Biases everywhere, or (rlhf_bias: false, nanoGPT's bias=False) nowhere.
      const b = c.attentionBias;
      const nb = c.normBias !== false;
      return {
        embedTokens: 'transformer.wte.weight', embedPositions: 'transformer.wpe.weight', embedNorm: null,
        projectIn: null, projectOut: null, finalNorm: ln('transformer.ln_f', nb),
        lmHead: c.tieWordEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `transformer.h.${i}`;
          return {
            ...plainLayer(c, i), ln1: ln(`${p}.ln_1`, nb), ln2: ln(`${p}.ln_2`, nb),
            attn: { kind: 'fused_concat', qkv: lin(`${p}.attn.c_attn`, 'in_out', C, 3 * C, b), o: lin(`${p}.attn.c_proj`, 'in_out', C, C, c.attnOutputBias), qNorm: null, kNorm: null },
            mlp: { kind: 'plain', fcIn: lin(`${p}.mlp.c_fc`, 'in_out', C, I, c.mlpBias), fcOut: lin(`${p}.mlp.c_proj`, 'in_out', I, C, c.mlpBias) },
          };
        }),
      };
    }
    case 'opt': {
      const E = c.wordEmbedDim;
      return {
        embedTokens: 'model.decoder.embed_tokens.weight', embedPositions: 'model.decoder.embed_positions.weight',
        embedNorm: null,
        projectIn: E !== C ? lin('model.decoder.project_in', 'out_in', E, C, false) : null,
        projectOut: E !== C ? lin('model.decoder.project_out', 'out_in', C, E, false) : null,
        finalNorm: c.finalNorm ? ln('model.decoder.final_layer_norm') : null,
        lmHead: c.tieWordEmbeddings ? 'model.decoder.embed_tokens.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `model.decoder.layers.${i}`;
          const b = c.attentionBias;
          return {
            ...plainLayer(c, i), ln1: ln(`${p}.self_attn_layer_norm`), ln2: ln(`${p}.final_layer_norm`),
            attn: {
              kind: 'separate', qNorm: null, kNorm: null, q: lin(`${p}.self_attn.q_proj`, 'out_in', C, C, b), k: lin(`${p}.self_attn.k_proj`, 'out_in', C, C, b),
              v: lin(`${p}.self_attn.v_proj`, 'out_in', C, C, b), o: lin(`${p}.self_attn.out_proj`, 'out_in', C, C, b),
            },
            mlp: { kind: 'plain', fcIn: lin(`${p}.fc1`, 'out_in', C, I, c.mlpBias), fcOut: lin(`${p}.fc2`, 'out_in', I, C, c.mlpBias) },
          };
        }),
      };
    }
    case 'bloom':
      return {
        embedTokens: 'transformer.word_embeddings.weight', embedPositions: null,
        embedNorm: ln('transformer.word_embeddings_layernorm'), projectIn: null, projectOut: null,
        finalNorm: ln('transformer.ln_f'),
        lmHead: c.tieWordEmbeddings ? 'transformer.word_embeddings.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `transformer.h.${i}`;
          return {
            ...plainLayer(c, i), ln1: ln(`${p}.input_layernorm`), ln2: ln(`${p}.post_attention_layernorm`),
            attn: {
              kind: 'fused_per_head', qkv: lin(`${p}.self_attention.query_key_value`, 'out_in', C, 3 * C, true),
              o: lin(`${p}.self_attention.dense`, 'out_in', C, C, true), qNorm: null, kNorm: null,
            },
            mlp: { kind: 'plain', fcIn: lin(`${p}.mlp.dense_h_to_4h`, 'out_in', C, I, true), fcOut: lin(`${p}.mlp.dense_4h_to_h`, 'out_in', I, C, true) },
          };
        }),
      };
    case 'gpt_neox':
      return {
        embedTokens: 'gpt_neox.embed_in.weight', embedPositions: null, embedNorm: null, projectIn: null, projectOut: null,
        finalNorm: ln('gpt_neox.final_layer_norm'), lmHead: c.tieWordEmbeddings ? 'gpt_neox.embed_in.weight' : 'embed_out.weight',
        layers: L.map((i) => {
          const p = `gpt_neox.layers.${i}`;
          return {
            ...plainLayer(c, i), ln1: ln(`${p}.input_layernorm`), ln2: ln(`${p}.post_attention_layernorm`),
            attn: {
              kind: 'fused_per_head', qkv: lin(`${p}.attention.query_key_value`, 'out_in', C, 3 * C, c.attentionBias),
              o: lin(`${p}.attention.dense`, 'out_in', C, C, c.attnOutputBias), qNorm: null, kNorm: null,
            },
            mlp: { kind: 'plain', fcIn: lin(`${p}.mlp.dense_h_to_4h`, 'out_in', C, I, true), fcOut: lin(`${p}.mlp.dense_4h_to_h`, 'out_in', I, C, true) },
          };
        }),
      };
    default:
      // LLaMA's layout, shared by Qwen2/3, Mistral, Phi-3 (fused qkv_proj and gate_up_proj) and Gemma 2 (four norms).
      return {
        embedTokens: 'model.embed_tokens.weight', embedPositions: null, embedNorm: null, projectIn: null,
        projectOut: null, finalNorm: ln('model.norm', false),
        lmHead: c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `model.layers.${i}`;
          const b = c.attentionBias;
          const mb = c.mlpBias;
          const a = `${p}.self_attn`;
          const heads = c.qkNorm ? { qNorm: ln(`${a}.q_norm`, false), kNorm: ln(`${a}.k_norm`, false) } : { qNorm: null, kNorm: null };
          const o = lin(`${a}.o_proj`, 'out_in', qDim, C, c.attnOutputBias);
          const fused = c.modelType === 'phi3';
          return {
            ln1: ln(`${p}.input_layernorm`, false),
            ln2: ln(c.sandwichNorm ? `${p}.pre_feedforward_layernorm` : `${p}.post_attention_layernorm`, false),
            postAttnNorm: c.sandwichNorm ? ln(`${p}.post_attention_layernorm`, false) : null,
            postMlpNorm: c.sandwichNorm ? ln(`${p}.post_feedforward_layernorm`, false) : null,
            window: c.layerWindows[i] ?? null,
            attn: fused
              ? { kind: 'fused_concat', qkv: lin(`${a}.qkv_proj`, 'out_in', C, qDim + 2 * kvDim, b), o, ...heads }
              : {
                kind: 'separate', q: lin(`${a}.q_proj`, 'out_in', C, qDim, b), k: lin(`${a}.k_proj`, 'out_in', C, kvDim, b),
                v: lin(`${a}.v_proj`, 'out_in', C, kvDim, b), o, ...heads,
              },
            mlp: fused
              ? { kind: 'gated_fused', gateUp: lin(`${p}.mlp.gate_up_proj`, 'out_in', C, 2 * I, mb), down: lin(`${p}.mlp.down_proj`, 'out_in', I, C, mb) }
              : {
                kind: 'gated', gate: lin(`${p}.mlp.gate_proj`, 'out_in', C, I, mb), up: lin(`${p}.mlp.up_proj`, 'out_in', C, I, mb),
                down: lin(`${p}.mlp.down_proj`, 'out_in', I, C, mb),
              },
          };
        }),
      };
  }
}

/** The per-layer fields the older families leave at their plain values. */
function plainLayer(c: ModelConfig, i: number): Pick<LayerSpec, 'postAttnNorm' | 'postMlpNorm' | 'window'> {
  return { postAttnNorm: null, postMlpNorm: null, window: c.layerWindows[i] ?? null };
}

export function linearsOf(layer: LayerSpec): LinearSpec[] {
  const a = layer.attn.kind === 'separate' ? [layer.attn.q, layer.attn.k, layer.attn.v, layer.attn.o] : [layer.attn.qkv, layer.attn.o];
  const m = layer.mlp;
  return [...a, ...(m.kind === 'plain' ? [m.fcIn, m.fcOut] : m.kind === 'gated' ? [m.gate, m.up, m.down] : [m.gateUp, m.down])];
}

/** The norms of a layer, with the width each normalises. */
export function normsOf(layer: LayerSpec, c: ModelConfig): [NormSpec, number][] {
  const out: [NormSpec, number][] = [[layer.ln1, c.hiddenSize], [layer.ln2, c.hiddenSize]];
  if (layer.postAttnNorm) out.push([layer.postAttnNorm, c.hiddenSize]);
  if (layer.postMlpNorm) out.push([layer.postMlpNorm, c.hiddenSize]);
  if (layer.attn.qNorm) out.push([layer.attn.qNorm, c.headDim]);
  if (layer.attn.kNorm) out.push([layer.attn.kNorm, c.headDim]);
  return out;
}

export interface ParamInfo {
  shape: number[];
  /** How `--from_config` initialises it. */
  init: 'normal' | 'zeros' | 'ones' | 'scaled_normal';
}

/** Every parameter name with its shape, in checkpoint order. */
export function parameterShapes(c: ModelConfig, spec: ModelSpec): Map<string, ParamInfo> {
  const out = new Map<string, ParamInfo>();
  const norm = (n: NormSpec | null, dim: number) => {
    if (!n) return;
    // Gemma stores (1 + w) norms as w: zeros there.
    out.set(n.weight, { shape: [dim], init: c.normWeightOffset ? 'zeros' : 'ones' });
    if (n.bias) out.set(n.bias, { shape: [dim], init: 'zeros' });
  };
  const linear = (l: LinearSpec | null, scaled = false) => {
    if (!l) return;
    out.set(`${l.module}.weight`, { shape: l.layout === 'out_in' ? [l.outDim, l.inDim] : [l.inDim, l.outDim], init: scaled ? 'scaled_normal' : 'normal' });
    if (l.bias) out.set(`${l.module}.bias`, { shape: [l.outDim], init: 'zeros' });
  };
  out.set(spec.embedTokens, { shape: [c.vocabSize, c.wordEmbedDim], init: 'normal' });
  if (spec.embedPositions) {
    const rows = c.positions === 'learned_offset2' ? c.maxPositions + 2 : c.maxPositions;
    out.set(spec.embedPositions, { shape: [rows, c.hiddenSize], init: 'normal' });
  }
  norm(spec.embedNorm, c.hiddenSize);
  linear(spec.projectIn);
  linear(spec.projectOut);
  for (const layer of spec.layers) {
    for (const [n, dim] of normsOf(layer, c)) norm(n, dim);
    for (const l of linearsOf(layer)) {
      const isOut = l === (layer.attn.o) || (layer.mlp.kind === 'plain' ? l === layer.mlp.fcOut : l === layer.mlp.down);
      linear(l, isOut);
    }
  }
  norm(spec.finalNorm, c.hiddenSize);
  if (!c.tieWordEmbeddings) out.set(spec.lmHead, { shape: [c.vocabSize, c.wordEmbedDim], init: 'normal' });
  return out;
}

/**
 * The biases a family's HF layout has that this config leaves out (GPT-2 with `rlhf_bias: false`), with their
 * shapes: savePretrained writes them as zeros, so transformers loads the same function, and loading accepts them
 * back only when they are zero. Empty for every other config.
 */
export function absentBiases(c: ModelConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  if (c.modelType !== 'gpt2' || (c.attentionBias && c.normBias !== false)) return out;
  const biased: ModelConfig = { ...c, attentionBias: true, attnOutputBias: true, mlpBias: true, normBias: true };
  const own = parameterShapes(c, buildSpec(c));
  for (const [name, info] of parameterShapes(biased, buildSpec(biased))) if (!own.has(name)) out.set(name, info.shape);
  return out;
}
