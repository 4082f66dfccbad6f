/**
 * Per-architecture layout as data: which HF parameter names a model has, their shapes, and how the decoder core
 * should wire them. The decoder (decoder.ts) reads only this description, never the model_type.
 */
import type { ModelConfig } from './config.js';
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
  ln1: NormSpec;
  ln2: NormSpec;
  /** `fused_gpt2`: one [C, 3C] product, q|k|v contiguous; `fused_bloom`: [3C] laid out per head as (H, 3, hs). */
  attn:
    | { kind: 'fused_gpt2' | 'fused_bloom'; qkv: LinearSpec; o: LinearSpec }
    | { kind: 'separate'; q: LinearSpec; k: LinearSpec; v: LinearSpec; o: LinearSpec };
  mlp: { kind: 'plain'; fcIn: LinearSpec; fcOut: LinearSpec } | { kind: 'gated'; gate: LinearSpec; up: LinearSpec; down: LinearSpec };
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

export function buildSpec(c: ModelConfig): ModelSpec {
  const C = c.hiddenSize;
  const I = c.intermediateSize;
  const kvDim = c.numKvHeads * c.headDim;
  const qDim = c.numHeads * c.headDim;
  const L = Array.from({ length: c.numLayers }, (_, i) => i);
  switch (c.modelType) {
    case 'gpt2':
      return {
        embedTokens: 'transformer.wte.weight', embedPositions: 'transformer.wpe.weight', embedNorm: null,
        projectIn: null, projectOut: null, finalNorm: ln('transformer.ln_f'),
        lmHead: c.tieWordEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `transformer.h.${i}`;
          return {
            ln1: ln(`${p}.ln_1`), ln2: ln(`${p}.ln_2`),
            attn: { kind: 'fused_gpt2', qkv: lin(`${p}.attn.c_attn`, 'in_out', C, 3 * C, true), o: lin(`${p}.attn.c_proj`, 'in_out', C, C, true) },
            mlp: { kind: 'plain', fcIn: lin(`${p}.mlp.c_fc`, 'in_out', C, I, true), fcOut: lin(`${p}.mlp.c_proj`, 'in_out', I, C, true) },
          };
        }),
      };
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
            ln1: ln(`${p}.self_attn_layer_norm`), ln2: ln(`${p}.final_layer_norm`),
            attn: {
              kind: 'separate', q: lin(`${p}.self_attn.q_proj`, 'out_in', C, C, b), k: lin(`${p}.self_attn.k_proj`, 'out_in', C, C, b),
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
            ln1: ln(`${p}.input_layernorm`), ln2: ln(`${p}.post_attention_layernorm`),
            attn: {
              kind: 'fused_bloom', qkv: lin(`${p}.self_attention.query_key_value`, 'out_in', C, 3 * C, true),
              o: lin(`${p}.self_attention.dense`, 'out_in', C, C, true),
            },
            mlp: { kind: 'plain', fcIn: lin(`${p}.mlp.dense_h_to_4h`, 'out_in', C, I, true), fcOut: lin(`${p}.mlp.dense_4h_to_h`, 'out_in', I, C, true) },
          };
        }),
      };
    case 'llama':
      return {
        embedTokens: 'model.embed_tokens.weight', embedPositions: null, embedNorm: null, projectIn: null,
        projectOut: null, finalNorm: ln('model.norm', false),
        lmHead: c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
        layers: L.map((i) => {
          const p = `model.layers.${i}`;
          const b = c.attentionBias;
          const mb = c.mlpBias;
          return {
            ln1: ln(`${p}.input_layernorm`, false), ln2: ln(`${p}.post_attention_layernorm`, false),
            attn: {
              kind: 'separate', q: lin(`${p}.self_attn.q_proj`, 'out_in', C, qDim, b), k: lin(`${p}.self_attn.k_proj`, 'out_in', C, kvDim, b),
              v: lin(`${p}.self_attn.v_proj`, 'out_in', C, kvDim, b), o: lin(`${p}.self_attn.o_proj`, 'out_in', qDim, C, b),
            },
            mlp: {
              kind: 'gated', gate: lin(`${p}.mlp.gate_proj`, 'out_in', C, I, mb), up: lin(`${p}.mlp.up_proj`, 'out_in', C, I, mb),
              down: lin(`${p}.mlp.down_proj`, 'out_in', I, C, mb),
            },
          };
        }),
      };
  }
}

export function linearsOf(layer: LayerSpec): LinearSpec[] {
  const a = layer.attn.kind === 'separate' ? [layer.attn.q, layer.attn.k, layer.attn.v, layer.attn.o] : [layer.attn.qkv, layer.attn.o];
  const m = layer.mlp.kind === 'plain' ? [layer.mlp.fcIn, layer.mlp.fcOut] : [layer.mlp.gate, layer.mlp.up, layer.mlp.down];
  return [...a, ...m];
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
    out.set(n.weight, { shape: [dim], init: 'ones' });
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
    norm(layer.ln1, c.hiddenSize);
    norm(layer.ln2, c.hiddenSize);
    for (const l of linearsOf(layer)) {
      const isOut = l === (layer.attn.o) || (layer.mlp.kind === 'plain' ? l === layer.mlp.fcOut : l === layer.mlp.down);
      linear(l, isOut);
    }
  }
  norm(spec.finalNorm, c.hiddenSize);
  if (!c.tieWordEmbeddings) out.set(spec.lmHead, { shape: [c.vocabSize, c.wordEmbedDim], init: 'normal' });
  return out;
}
