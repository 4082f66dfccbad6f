/**
 * The model-facing ops on packed frozen weights (packed_weight.ts): the affine map in both HF layouts, the embedding
 * lookup, and the LM head's products. Frozen means no weight gradient: the linear's gradient is dx (and the bias's
 * column sum, the bias staying float32), so LoRA and prefix adapters train through a packed base.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { ensurePackedKernels, PACKED_GATHER, PACKED_MATMUL } from './packed_kernels.js';
import type { PackedWeight } from './packed_weight.js';
import type { WeightLayout } from './linear.js';
import { columnSums } from './matmul.js';
import { reshape } from './lean.js';
import { tidyGrad } from './tidy_grad.js';

function attrsOf(w: PackedWeight, transW: boolean) {
  return { format: w.format, R: w.shape[0], C: w.shape[1], channelAxis: w.channelAxis, transW };
}

function inputsOf(w: PackedWeight, extra: Record<string, Tensor>): tf.NamedTensorMap {
  return w.scales ? { ...extra, data: w.data, scales: w.scales } : { ...extra, data: w.data };
}

/** x[N, R] · W (transW false) or x[N, C] · Wᵀ (transW true) for W [R, C] packed; no gradient of its own. */
export function packedMatMul(x: Tensor, w: PackedWeight, transW: boolean): Tensor {
  if (w.isDisposed) throw new Error('packedMatMul: the packed weight was disposed');
  ensurePackedKernels();
  const x32 = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
  return tf.engine().runKernel(PACKED_MATMUL, inputsOf(w, { x: x32 }), attrsOf(w, transW) as unknown as tf.NamedAttrMap) as Tensor;
}

interface LinearOps {
  noBias: (x: Tensor) => Tensor;
  withBias: (x: Tensor, b: Tensor) => Tensor;
}

const OPS = new WeakMap<PackedWeight, Map<WeightLayout, LinearOps>>();

function opsFor(w: PackedWeight, layout: WeightLayout): LinearOps {
  let byLayout = OPS.get(w);
  if (!byLayout) OPS.set(w, (byLayout = new Map()));
  let ops = byLayout.get(layout);
  if (ops) return ops;
  // out_in stores [out, in]: y = x·Wᵀ, dx = dy·W. in_out stores [in, out]: y = x·W, dx = dy·Wᵀ.
  const fwdTrans = layout === 'out_in';
  const noBias = tf.customGrad((x) => ({
    value: packedMatMul(x as Tensor, w, fwdTrans),
    gradFunc: tidyGrad((dy: Tensor) => packedMatMul(dy, w, !fwdTrans)),
  })) as unknown as (x: Tensor) => Tensor;
  const withBias = tf.customGrad((x, b) => ({
    value: tf.add(packedMatMul(x as Tensor, w, fwdTrans), b as Tensor),
    gradFunc: tidyGrad((dy: Tensor) => [packedMatMul(dy, w, !fwdTrans), columnSums(dy)]),
  })) as unknown as (x: Tensor, b: Tensor) => Tensor;
  ops = { noBias, withBias };
  byLayout.set(layout, ops);
  return ops;
}

/** y = x W (+ b) for x of any rank ≥ 2 and a packed W in its checkpoint layout (see linear.ts). */
export function packedLinear(x: Tensor, w: PackedWeight, b: Tensor | null, layout: WeightLayout): Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const [R, C] = w.shape;
  const [wIn, wOut] = layout === 'out_in' ? [C, R] : [R, C];
  if (inDim !== wIn) throw new Error(`linear: input width ${inDim} does not match the packed [${w.shape}] weight (${layout})`);
  const x2 = x.rank === 2 ? x : reshape(x, [x.size / inDim, inDim]);
  const ops = opsFor(w, layout);
  const y = b ? ops.withBias(x2, b) : ops.noBias(x2);
  return x.rank === 2 ? y : reshape(y, [...x.shape.slice(0, -1), wOut]);
}

/** table[V, C] packed, gathered at int ids of any shape → [...ids.shape, C] float32 (frozen: no gradient). */
export function packedEmbedding(table: PackedWeight, ids: Tensor): Tensor {
  ensurePackedKernels();
  const flat = ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32');
  const rows = tf.engine().runKernel(PACKED_GATHER, inputsOf(table, { ids: flat }), attrsOf(table, false) as unknown as tf.NamedAttrMap) as Tensor;
  return reshape(rows, [...ids.shape, table.shape[1]]);
}

/** h[N, C] · head[V, C]ᵀ → logits [N, V], differentiable in h (dh = dz · W). */
export const packedHeadLogits = (h: Tensor, head: PackedWeight): Tensor => packedLinear(h, head, null, 'out_in');

/** The mean of the head's rows, [C]: Σ_v W_v / V (TRL's mean logit without the logits). */
export function packedRowMean(w: PackedWeight): Tensor {
  return tf.tidy(() => tf.reshape(packedMatMul(tf.fill([1, w.shape[0]], 1 / w.shape[0]), w, false), [w.shape[1]]));
}
