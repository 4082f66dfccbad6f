/**
 * Decode steps of a `DecoderModel` through the whole-layer native calls (engine/native_decode_layer.ts): which models
 * they cover, the weights each layer's call reads (gathered once per generation session), and a step: embeddings on
 * the host, one call per layer, one for the final norm and the head of each row's last position.
 *
 * Covered: pre-norm decoders whose weights are float32 or bf16-packed tensors on the native backend, LoRA adapters
 * included (the LLaMA layout with Qwen2/3, Mistral, Phi-3, Gemma 2; GPT-2; GPT-NeoX; pre-LN OPT without
 * project_in/out). Everything else, int8/nf4 weights included, keeps the per-op path, decided once per session.
 */
import type { DecoderModel } from './decoder.js';
import { linearsOf, type LayerSpec, type LinearSpec, type NormSpec } from './architectures.js';
import { ropeFrequencies } from './ops/rope.js';
import type { NativeKVCache } from '../engine/native_decode.js';
import {
  decodeHead, decodeLayer, fusedDecodeUnavailable, LAYER_SLOTS, valuesInPlace, wordsInPlace,
  type DecodeLayerPlan, type DecodeModelDims, type LayerSlot, type LoraTerm, type WeightValues,
} from '../engine/native_decode_layer.js';
import type { Tensor } from '../engine/tf.js';

/**
 * Which calls take the whole-layer kernels: at most FUSED_DECODE_MAX_ROWS rows (B·T) and FUSED_DECODE_MAX_MACS
 * multiply-adds in the products; past them the per-op path's BLAS products win, the weight re-packing being spread
 * over enough rows. Measured at 1 thread (CPU time): the demo model's steps are faster this way up to B = 256 and
 * its 1,024-row prefill slower; GPT-2 124M's steps faster up to B = 32 (4.0e9 multiply-adds), slower at B = 64.
 */
export const FUSED_DECODE_MAX_ROWS = 256;
export const FUSED_DECODE_MAX_MACS = 4.2e9;

/** Why `model`'s decode steps cannot take the whole-layer calls ('' when they can); native decode is assumed. */
export function fusedDecodeUnsupported(model: DecoderModel): string {
  const why = fusedDecodeUnavailable();
  if (why) return why;
  const c = model.config;
  const s = model.spec;
  if (model.frozenDtype !== 'float32' && model.frozenDtype !== 'bf16') return `packed frozen weights (${model.frozenDtype})`;
  if (!c.preNorm) return 'post-norm layers';
  if (s.projectIn || s.projectOut || s.embedNorm) return 'an embedding projection or norm';
  if (s.layers.some((l) => (l.attn.qNorm || l.attn.kNorm) && l.attn.kind !== 'separate')) return 'per-head q/k norms on a fused projection';
  if (c.positions === 'alibi') return 'ALiBi position bias';
  const adapter = model.lora && model.loraEnabled ? model.lora.trainableVariables() : [];
  for (const v of [...model.params.values(), ...adapter]) if (!valuesInPlace(v)) return 'weights outside the native backend';
  for (const w of model.packed.values()) if (!wordsInPlace(w.data)) return 'weights outside the native backend';
  return '';
}

/** A float32 parameter's values in place (fusedDecodeUnsupported has checked that every one has them). */
function values(model: DecoderModel, name: string): Float32Array {
  const v = model.params.get(name);
  if (!v) throw new Error(`fused decode: no float32 parameter ${name}`);
  return valuesOf(v);
}

/** A weight matrix as stored: its float32 values, or a bf16-packed matrix's words (both in place). */
function matrix(model: DecoderModel, name: string): WeightValues {
  const p = model.packed.get(name);
  if (!p) return values(model, name);
  const w = p.format === 'bf16' ? wordsInPlace(p.data) : null;
  if (!w) throw new Error(`fused decode: ${name} is packed as ${p.format}, which the layer calls do not read`);
  return w;
}

/** Row `row` of a [rows, C] table (float32 or bf16 words) into out[at …], as float32. */
function copyRow(table: WeightValues, row: number, C: number, out: Float32Array, at: number): void {
  if (table instanceof Float32Array) {
    out.set(table.subarray(row * C, (row + 1) * C), at);
    return;
  }
  const h = new Uint16Array(table.buffer, table.byteOffset, table.length * 2);
  const o = new Uint32Array(out.buffer, out.byteOffset + 4 * at, C);
  for (let i = 0; i < C; i++) o[i] = h[row * C + i]! << 16; // bf16: the upper half of the float32
}

function valuesOf(t: Tensor): Float32Array {
  const a = valuesInPlace(t);
  if (!a) throw new Error('fused decode: a weight has no float32 values on the native backend');
  return a;
}

function layerPlan(model: DecoderModel, layer: LayerSpec): DecodeLayerPlan {
  const weights: (WeightValues | null)[] = LAYER_SLOTS.map(() => null);
  const adapter = model.lora && model.loraEnabled ? model.lora : null;
  const lora: (LoraTerm | null)[] | null = adapter ? LAYER_SLOTS.map(() => null) : null;
  const inOut = new Set<LayerSlot>();
  const put = (slot: string, l: LinearSpec) => {
    weights[LAYER_SLOTS.indexOf(`${slot}.w` as LayerSlot)] = matrix(model, `${l.module}.weight`);
    const m = adapter?.modules.get(l.module);
    if (m) lora![LAYER_SLOTS.indexOf(`${slot}.w` as LayerSlot)] = [valuesOf(m.A), valuesOf(m.B), adapter!.scaling];
    if (l.bias) weights[LAYER_SLOTS.indexOf(`${slot}.b` as LayerSlot)] = values(model, `${l.module}.bias`);
    if (l.layout === 'in_out') inOut.add(`${slot}.w` as LayerSlot);
  };
  const norm = (slot: string, n: NormSpec | null) => {
    if (!n) return;
    weights[LAYER_SLOTS.indexOf(`${slot}.w` as LayerSlot)] = values(model, n.weight);
    if (n.bias) weights[LAYER_SLOTS.indexOf(`${slot}.b` as LayerSlot)] = values(model, n.bias);
  };
  norm('ln1', layer.ln1);
  norm('ln2', layer.ln2);
  norm('postAttn', layer.postAttnNorm);
  norm('postMlp', layer.postMlpNorm);
  const a = layer.attn;
  norm('qNorm', a.qNorm);
  norm('kNorm', a.kNorm);
  if (a.kind === 'separate') {
    put('q', a.q);
    put('k', a.k);
    put('v', a.v);
  } else put('q', a.qkv);
  put('o', a.o);
  const m = layer.mlp;
  if (m.kind === 'plain') {
    put('in', m.fcIn);
    put('down', m.fcOut);
  } else if (m.kind === 'gated') {
    put('in', m.gate);
    put('up', m.up);
    put('down', m.down);
  } else {
    put('in', m.gateUp);
    put('down', m.down);
  }
  return { weights, lora, inOut, attn: a.kind, mlp: m.kind, window: layer.window };
}

export class FusedDecodeStep {
  private readonly layers: DecodeLayerPlan[];
  private readonly dims: DecodeModelDims;
  private readonly tokens: WeightValues;
  private readonly positionTable: WeightValues | null;
  private readonly finalNorm: { weight: Float32Array; bias: Float32Array | null } | null;
  private readonly head: WeightValues;
  /** Rotary frequencies when they do not depend on the positions (all but dynamic NTK). */
  private readonly fixedRotary: { invFreq: Float32Array; scaling: number } | null;
  /** Multiply-adds of one row through every product (the layers' weights and the head). */
  readonly macsPerRow: number;
  /** Calls made (a test checks that the kernels ran). */
  calls = 0;

  /** Only for a model `fusedDecodeUnsupported` accepts. */
  constructor(private readonly model: DecoderModel) {
    const c = model.config;
    const s = model.spec;
    this.layers = s.layers.map((l) => layerPlan(model, l));
    this.dims = {
      C: c.hiddenSize, H: c.numHeads, Hkv: c.numKvHeads, hs: c.headDim, I: c.intermediateSize, act: c.activation, norm: c.norm,
      parallelResidual: c.parallelResidual, eps: c.normEps, normOffset: c.norm === 'rmsnorm' ? c.normWeightOffset : 0,
      attnScale: c.attnScale, attnSoftcap: c.attnSoftcap,
    };
    this.tokens = matrix(model, s.embedTokens);
    this.positionTable = s.embedPositions ? matrix(model, s.embedPositions) : null;
    this.finalNorm = s.finalNorm ? { weight: values(model, s.finalNorm.weight), bias: s.finalNorm.bias ? values(model, s.finalNorm.bias) : null } : null;
    this.head = matrix(model, s.lmHead);
    this.fixedRotary = c.rope && c.rope.type !== 'dynamic' ? this.rotary(0) : null;
    this.macsPerRow = s.layers.flatMap((l) => linearsOf(l)).reduce((n, l) => n + l.inDim * l.outDim, 0) + c.vocabSize * c.hiddenSize;
  }

  /** Whether a call of `rows` rows (B·T) should run here (see FUSED_DECODE_MAX_ROWS). */
  covers(rows: number): boolean {
    return rows <= FUSED_DECODE_MAX_ROWS && rows * this.macsPerRow <= FUSED_DECODE_MAX_MACS;
  }

  private rotary(maxPosition: number): { invFreq: Float32Array; scaling: number } | null {
    const rope = this.model.config.rope;
    if (!rope) return null;
    const f = ropeFrequencies(rope, maxPosition);
    return { invFreq: Float32Array.from(f.invFreq), scaling: f.scaling };
  }

  /**
   * Logits [B, V] of the last of the T new positions of each row: `ids` [B][T] the new tokens, `positions` [B·T]
   * their position ids. Writes every layer's keys and values into `cache` and advances its length by T.
   */
  logits(ids: number[][], positions: Int32Array, cache: NativeKVCache): Float32Array {
    const c = this.model.config;
    const { C } = this.dims;
    const B = ids.length;
    const T = ids[0]!.length;
    const V = c.vocabSize;
    // 1. embeddings, as the tensor path's ops compute them in float32: table row · scale (+ position row)
    const x = new Float32Array(B * T * C);
    const pe = this.positionTable ? new Float32Array(C) : null;
    const scale = Math.fround(c.embedScale);
    const offset = c.positions === 'learned_offset2' ? 2 : 0;
    const rows = this.positionTable ? this.positionTable.length * (this.positionTable instanceof Float32Array ? 1 : 2) / C : 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = ids[b]![t]!;
        if (!(id >= 0 && id < V)) throw new Error(`fused decode: token id ${id} outside the vocabulary of ${V}`);
        const r = (b * T + t) * C;
        copyRow(this.tokens, id, C, x, r);
        if (scale !== 1) for (let i = 0; i < C; i++) x[r + i] = x[r + i]! * scale;
        if (this.positionTable && pe) {
          const p = positions[b * T + t]! + offset;
          if (!(p >= 0 && p < rows)) throw new Error(`fused decode: position ${p} outside the position table`);
          copyRow(this.positionTable, p, C, pe, 0);
          for (let i = 0; i < C; i++) x[r + i] = x[r + i]! + pe[i]!;
        }
      }
    }
    // 2. the layers, in place on x
    let rotary = this.fixedRotary;
    if (c.rope?.type === 'dynamic') rotary = this.rotary(positions.reduce((m, p) => Math.max(m, p), 0));
    this.layers.forEach((plan, l) => decodeLayer(x, B, T, positions, rotary, cache, l, plan, this.dims));
    cache.length += T;
    // 3. final norm and head on each row's last position
    const last = T === 1 ? x : new Float32Array(B * C);
    if (T > 1) for (let b = 0; b < B; b++) last.set(x.subarray(((b + 1) * T - 1) * C, (b + 1) * T * C), b * C);
    this.calls++;
    return decodeHead(last, B, this.finalNorm, this.head, V, this.dims, c.finalSoftcap);
  }
}
