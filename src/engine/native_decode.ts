/**
 * Inference attention on the native backend over a KV cache that grows in place (native/engine/decode_attention.cc).
 *
 * The tensor path (models/ops/attention.ts with a cache of tensors) pays per token: a concat of every layer's keys
 * and values (O(T²) copying over a generation), the head transposes, rotary slices and concats, a mask built over the
 * whole sequence, and a dozen small kernels, each costing more in dispatch than in arithmetic at decode shapes. Here
 * one kernel per layer takes the projections' output as it is, applies the rotary embedding, writes k and v into
 * preallocated cache buffers and attends, writing the heads in the layout the output projection reads.
 *
 * Invariant: the cache buffers are plain Float32Arrays owned by a `NativeKVCache`, never the values of a tensor, so
 * the kernel mutating them in place can never change a tensor that anything else holds; only this module's kernel
 * reads or writes them.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { tf, type Tensor } from './tf.js';
import { engineAddonPath, NATIVE_BACKEND, NATIVE_ENGINE_ENV } from './native_backend.js';

interface DecodeAddon {
  decodeAttention(
    q: Float32Array, k: Float32Array, v: Float32Array, positions: Int32Array, invFreq: Float32Array, mask: Int32Array,
    keyCache: Float32Array, valueCache: Float32Array, out: Float32Array, dims: number[], reals: number[],
  ): void;
}

let addon: DecodeAddon | null | undefined;

function decodeAddon(): DecodeAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const file = engineAddonPath();
  if (process.env[NATIVE_ENGINE_ENV] === '0' || !existsSync(file)) return null;
  try {
    const a = createRequire(import.meta.url)(file) as Partial<DecodeAddon>;
    if (typeof a.decodeAttention === 'function') addon = a as DecodeAddon;
  } catch {
    addon = null;
  }
  return addon;
}

/** RLHF_NATIVE_DECODE=0 keeps generation on the tensor path even on the native backend (to compare or bisect). */
export const NATIVE_DECODE_ENV = 'RLHF_NATIVE_DECODE';

/** Why `decodeAttention` cannot run now ('' when it can): it needs the native backend active and its kernel built. */
export function nativeDecodeUnavailable(): string {
  if (process.env[NATIVE_DECODE_ENV] === '0') return `disabled by ${NATIVE_DECODE_ENV}=0`;
  if (tf.getBackend() !== NATIVE_BACKEND) return `backend is ${tf.getBackend()}, not ${NATIVE_BACKEND}`;
  if (!decodeAddon()) return 'native/engine has no decodeAttention (rebuild it: npm run build:engine)';
  return '';
}

/**
 * Keys and values of `layers` layers for B rows, up to `capacity` positions, plus the 0/1 attention mask of those
 * positions (the caller writes it: `mask[b·capacity + j]`). `length`: positions written so far.
 */
export class NativeKVCache {
  readonly keys: Float32Array[] = [];
  readonly values: Float32Array[] = [];
  readonly mask: Int32Array;
  length = 0;

  constructor(readonly batch: number, readonly layers: number, readonly kvHeads: number, readonly headDim: number, readonly capacity: number) {
    const n = batch * kvHeads * headDim * capacity;
    for (let l = 0; l < layers; l++) {
      this.keys.push(new Float32Array(n));
      this.values.push(new Float32Array(n));
    }
    this.mask = new Int32Array(batch * capacity);
  }

  /** Bytes held. */
  get bytes(): number {
    return 8 * this.layers * this.batch * this.kvHeads * this.headDim * this.capacity + 4 * this.mask.length;
  }
}

/** Where the heads of q, k and v lie in the projection outputs: head h of row r at offset + r·row + h·headStride. */
export interface HeadLayout {
  qOffset: number;
  qRow: number;
  kOffset: number;
  kRow: number;
  vOffset: number;
  vRow: number;
  headStride: number;
}

export interface DecodeAttentionParams {
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** c in c·tanh(scores / c), or null. */
  softcap: number | null;
  /** Keys visible to a query: itself and the window − 1 slots before it; null for all. */
  window: number | null;
  /** Rotary embedding on the first `dim` entries of each head (inverse frequencies [dim / 2]), or null. */
  rotary: { invFreq: Float32Array; scaling: number } | null;
  layout: HeadLayout;
}

const KERNEL = 'RlhfDecodeAttention';
let registered = false;

interface KernelAttrs {
  cache: NativeKVCache;
  layer: number;
  p: DecodeAttentionParams;
}

type BackendWithData = { data: { get(id: object): { values: unknown } | undefined }; makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo };

function register(a: DecodeAddon): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: KERNEL,
    backendName: NATIVE_BACKEND,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as BackendWithData;
      const { q, k, v, positions } = inputs as Record<'q' | 'k' | 'v' | 'positions', tf.TensorInfo>;
      const { cache, layer, p } = attrs as unknown as KernelAttrs;
      const arr = (t: tf.TensorInfo) => be.data.get(t.dataId)?.values;
      const [qv, kv, vv, pv] = [arr(q), arr(k), arr(v), arr(positions)];
      if (!(qv instanceof Float32Array) || !(kv instanceof Float32Array) || !(vv instanceof Float32Array)) throw new Error('decodeAttention: q, k and v must be float32');
      if (!(pv instanceof Int32Array)) throw new Error('decodeAttention: positions must be int32');
      const [B, T] = positions.shape as [number, number];
      const out = new Float32Array(B * T * p.heads * p.headDim);
      const L = p.layout;
      const rot = p.rotary ? 2 * p.rotary.invFreq.length : 0;
      a.decodeAttention(
        qv, kv, vv, pv, p.rotary?.invFreq ?? new Float32Array(0), cache.mask, cache.keys[layer]!, cache.values[layer]!, out,
        [B, T, p.heads, p.kvHeads, p.headDim, cache.length, cache.capacity, rot, p.window ?? 0,
          L.qOffset, L.qRow, L.kOffset, L.kRow, L.vOffset, L.vRow, L.headStride],
        [p.scale, p.softcap ?? 0, p.rotary?.scaling ?? 1],
      );
      return be.makeTensorInfo([B, T, p.heads * p.headDim], 'float32', out);
    },
  });
}

/**
 * Attention of T new positions (`positions` [B, T] int32: their position ids) after `cache.length` cached ones, for
 * one layer: writes that layer's k and v at slots length … length + T − 1 and returns [B, T, H·hs]. The caller
 * advances `cache.length` by T once every layer has run. Inference only: there is no gradient.
 */
export function decodeAttention(q: Tensor, k: Tensor, v: Tensor, positions: Tensor, cache: NativeKVCache, layer: number, p: DecodeAttentionParams): Tensor {
  const a = decodeAddon();
  const why = nativeDecodeUnavailable();
  if (!a || why) throw new Error(`decodeAttention: ${why}`);
  const [B, T] = positions.shape as [number, number];
  if (B !== cache.batch) throw new Error(`decodeAttention: batch ${B} but the cache holds ${cache.batch} rows`);
  if (cache.length + T > cache.capacity) throw new Error(`decodeAttention: ${cache.length} + ${T} positions exceed the cache's capacity ${cache.capacity}`);
  if (layer < 0 || layer >= cache.layers) throw new Error(`decodeAttention: layer ${layer} outside the cache's ${cache.layers}`);
  if (p.kvHeads !== cache.kvHeads || p.headDim !== cache.headDim) throw new Error('decodeAttention: heads do not match the cache');
  register(a);
  const attrs: KernelAttrs = { cache, layer, p };
  return tf.engine().runKernel(KERNEL, { q, k, v, positions }, attrs as unknown as tf.NamedAttrMap) as Tensor;
}
