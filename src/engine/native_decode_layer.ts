/**
 * A decode step without tfjs kernels (native/engine/decode_layer.cc): each decoder layer is one native call on plain
 * Float32Arrays (norm, q/k/v, attention over the `NativeKVCache`, o-projection, residual, norm, MLP, residual), and
 * the final norm with the vocabulary head one more. At decode shapes (B rows, one new position) the per-op path spends
 * more in ~25 kernel dispatches per layer, and in BLAS re-packing every weight for a 16-row product, than in
 * arithmetic; these calls read each weight once in the layout it is stored in.
 *
 * The weights are the model's own tensors' values, read in place (never copied, never written).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { tf, type Tensor } from './tf.js';
import { engineAddonPath, NATIVE_ENGINE_ENV } from './native_backend.js';
import type { NativeKVCache } from './native_decode.js';

/** A weight matrix's values: float32, or bf16 as an Int32Array of pairs (ops/packed_weight.ts's layout). */
export type WeightValues = Float32Array | Int32Array;

interface DecodeLayerAddon {
  decodeLayer(
    weights: (WeightValues | null)[], x: Float32Array, positions: Int32Array, invFreq: Float32Array | null, mask: Int32Array,
    keyCache: Float32Array, valueCache: Float32Array, dims: number[], reals: number[], lora: (LoraTerm | null)[] | null,
  ): void;
  decodeHead(x: Float32Array, normWeight: Float32Array | null, normBias: Float32Array | null, head: WeightValues, logits: Float32Array, dims: number[], reals: number[]): void;
}

let addon: DecodeLayerAddon | null | undefined;

function layerAddon(): DecodeLayerAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const file = engineAddonPath();
  if (process.env[NATIVE_ENGINE_ENV] === '0' || !existsSync(file)) return null;
  try {
    const a = createRequire(import.meta.url)(file) as Partial<DecodeLayerAddon>;
    if (typeof a.decodeLayer === 'function' && typeof a.decodeHead === 'function') addon = a as DecodeLayerAddon;
  } catch {
    addon = null;
  }
  return addon;
}

/** RLHF_FUSED_DECODE=0 keeps decode steps on the per-op path (tfjs kernels around the attention kernel). */
export const FUSED_DECODE_ENV = 'RLHF_FUSED_DECODE';

/** Why the whole-layer decode calls cannot run ('' when they can); the caller has checked the native decode kernel. */
export function fusedDecodeUnavailable(): string {
  if (process.env[FUSED_DECODE_ENV] === '0') return `disabled by ${FUSED_DECODE_ENV}=0`;
  if (!layerAddon()) return 'native/engine has no decodeLayer (rebuild it: npm run build:engine)';
  return '';
}

/** The float32 values a tensor holds on the native backend, in place; null when they are not a Float32Array there. */
export function valuesInPlace(t: Tensor): Float32Array | null {
  const be = tf.backend() as unknown as { data?: { get(id: object): { values?: unknown } | undefined } };
  const v = be.data?.get(t.dataId)?.values;
  return v instanceof Float32Array && v.length === t.size ? v : null;
}

/** The int32 words a tensor holds on the native backend (a packed weight's bits), in place; null otherwise. */
export function wordsInPlace(t: Tensor): Int32Array | null {
  const be = tf.backend() as unknown as { data?: { get(id: object): { values?: unknown } | undefined } };
  const v = be.data?.get(t.dataId)?.values;
  return v instanceof Int32Array && v.length === t.size ? v : null;
}

/** Weight slots of `decodeLayer`, in its order (null: absent bias or norm). */
export const LAYER_SLOTS = [
  'ln1.w', 'ln1.b', 'q.w', 'q.b', 'k.w', 'k.b', 'v.w', 'v.b', 'o.w', 'o.b', 'ln2.w', 'ln2.b',
  'in.w', 'in.b', 'up.w', 'up.b', 'down.w', 'down.b', 'postAttn.w', 'postAttn.b', 'postMlp.w', 'postMlp.b', 'qNorm.w', 'kNorm.w',
] as const;
export type LayerSlot = (typeof LAYER_SLOTS)[number];

export const ATTN_KIND = { separate: 0, fused_concat: 1, fused_per_head: 2 } as const;
export const MLP_KIND = { plain: 0, gated: 1, gated_fused: 2 } as const;
export const ACT_KIND = { silu: 0, gelu_new: 1, gelu: 2, relu: 3 } as const;
export const NORM_KIND = { rmsnorm: 0, layernorm: 1 } as const;

/** A LoRA adapter's term on one projection: scaling·(x·Aᵀ)·Bᵀ, A [r, in], B [out, r]. */
export type LoraTerm = [A: Float32Array, B: Float32Array, scaling: number];

/** What one layer's call needs besides the step's inputs. */
export interface DecodeLayerPlan {
  weights: (WeightValues | null)[];
  /** Per weight slot, the LoRA term added to that projection (null: none); null when no adapter is on. */
  lora: (LoraTerm | null)[] | null;
  /** Slots whose weight is stored [in, out] (GPT-2's Conv1D); the others are [out, in]. */
  inOut: Set<LayerSlot>;
  attn: keyof typeof ATTN_KIND;
  mlp: keyof typeof MLP_KIND;
  window: number | null;
}

/** The model-wide numbers of the layer calls. */
export interface DecodeModelDims {
  C: number;
  H: number;
  Hkv: number;
  hs: number;
  I: number;
  act: keyof typeof ACT_KIND;
  norm: keyof typeof NORM_KIND;
  parallelResidual: boolean;
  eps: number;
  /** Added to every norm weight (Gemma's 1 + w); 0 elsewhere. */
  normOffset: number;
  attnScale: number;
  attnSoftcap: number | null;
}

/**
 * One layer on x [B·T, C] (overwritten with the layer's output) for T new positions per row (`positions` [B·T]
 * their ids) after `cache.length` cached ones: writes the layer's keys and values into the cache. The caller advances
 * `cache.length` once every layer has run.
 */
export function decodeLayer(
  x: Float32Array, B: number, T: number, positions: Int32Array, rotary: { invFreq: Float32Array; scaling: number } | null,
  cache: NativeKVCache, layer: number, plan: DecodeLayerPlan, m: DecodeModelDims,
): void {
  const a = layerAddon();
  if (!a) throw new Error(`decodeLayer: ${fusedDecodeUnavailable()}`);
  if (cache.length + T > cache.capacity) throw new Error(`decodeLayer: ${cache.length} + ${T} positions exceed the cache's capacity ${cache.capacity}`);
  let mask = 0;
  LAYER_SLOTS.forEach((s, i) => {
    if (plan.inOut.has(s)) mask += 2 ** i;
  });
  a.decodeLayer(
    plan.weights, x, positions, rotary?.invFreq ?? null, cache.mask, cache.keys[layer]!, cache.values[layer]!,
    [B, T, m.C, m.H, m.Hkv, m.hs, cache.length, cache.capacity, rotary ? 2 * rotary.invFreq.length : 0, plan.window ?? 0,
      ATTN_KIND[plan.attn], MLP_KIND[plan.mlp], m.I, ACT_KIND[m.act], NORM_KIND[m.norm], mask, m.parallelResidual ? 1 : 0],
    [m.eps, m.normOffset, m.attnScale, m.attnSoftcap ?? 0, rotary?.scaling ?? 1], plan.lora,
  );
}

/**
 * logits [R, V] = norm(x) · headᵀ for x [R, C]; head [V, C], float32 or bf16 (or [C, V] with `headInOut`, which the tests use to check
 * the layers' other product layout); `norm` null: none; softcap c: c·tanh(z / c).
 */
export function decodeHead(
  x: Float32Array, R: number, norm: { weight: Float32Array; bias: Float32Array | null } | null, head: WeightValues, V: number,
  m: Pick<DecodeModelDims, 'C' | 'norm' | 'eps' | 'normOffset'>, softcap: number | null, headInOut = false,
): Float32Array {
  const a = layerAddon();
  if (!a) throw new Error(`decodeHead: ${fusedDecodeUnavailable()}`);
  const logits = new Float32Array(R * V);
  a.decodeHead(x, norm?.weight ?? null, norm?.bias ?? null, head, logits, [R, m.C, V, NORM_KIND[m.norm], headInOut ? 1 : 0], [m.eps, m.normOffset, softcap ?? 0]);
  return logits;
}
