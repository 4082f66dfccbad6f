/**
 * Affine maps over the last axis, for both weight layouts HF checkpoints use:
 * `out_in` (torch nn.Linear, weight [out, in]) and `in_out` (GPT-2's Conv1D, weight [in, out]).
 * Weights stay in their checkpoint layout so names, shapes and saved files match HF exactly; the gradients are
 * written out so every product runs in the fast untransposed 2-D form, and the bias gradient is a column sum
 * (see `columnSums`) rather than tfjs's broadcast-add gradient.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { gradientsRecording, tidyGrad } from './tidy_grad.js';
import { columnSums, fastTransposedProducts } from './matmul.js';
import { reshape } from './lean.js';

export type WeightLayout = 'out_in' | 'in_out';

/** x[N, in] · W (+ b), with W [in, out] given as `wIn` (the weight in that orientation) for the forward product. */
function forwardProduct(x: Tensor, wInOut: Tensor, b: Tensor | null, transposeB = false): Tensor {
  return b ? tf.fused.matMul({ a: x, b: wInOut, bias: b, transposeB }) : tf.matMul(x, wInOut, false, transposeB);
}

/** x · W (+ b) for the weight in its own layout: transpose flags where they are fast, else an [in, out] copy. */
function product(x: Tensor, w: Tensor, b: Tensor | null, layout: WeightLayout): Tensor {
  if (fastTransposedProducts()) return forwardProduct(x, w, b, layout === 'out_in');
  return forwardProduct(x, inOut(w, layout), b);
}

/** dx = dy · Wᵀ and dW in the weight's own layout: with transpose flags where fast, else as untransposed products. */
function weightGrads(dy: Tensor, x: Tensor, w: Tensor, layout: WeightLayout): [Tensor, Tensor] {
  if (fastTransposedProducts()) {
    return layout === 'out_in'
      ? [tf.matMul(dy, w), tf.matMul(dy, x, true, false)] // w [out, in]
      : [tf.matMul(dy, w, false, true), tf.matMul(x, dy, true, false)]; // w [in, out]
  }
  if (layout === 'out_in') {
    // w [out, in]: dx = dy[N,out] · w; dw = dyᵀ[out,N] · x[N,in]
    return [tf.matMul(dy, w), tf.matMul(tf.transpose(dy, [1, 0]), x)];
  }
  // w [in, out]: dx = dy · wᵀ[out,in]; dw = xᵀ[in,N] · dy[N,out]
  return [tf.matMul(dy, tf.transpose(w, [1, 0])), tf.matMul(tf.transpose(x, [1, 0]), dy)];
}

/**
 * The weight as [in, out] for the forward product. XNNPACK keeps a packed copy of every right-hand matrix until
 * that tensor is freed; for a parameter that is until the optimizer replaces it, i.e. across the whole backward
 * pass (one more copy of the model). While training, an [in, out] weight is therefore multiplied through a
 * short-lived copy, whose packed form goes with it. At inference the packed weight is reused from call to call.
 */
function inOut(w: Tensor, layout: WeightLayout): Tensor {
  if (layout === 'out_in') return tf.transpose(w, [1, 0]);
  return gradientsRecording() && tf.getBackend() === 'wasm' ? tf.slice(w, [0, 0], w.shape as [number, number]) : w;
}

function makeLinear(layout: WeightLayout) {
  const noBias = tf.customGrad((x, w, save) => {
    (save as tf.GradSaveFunc)([x as Tensor, w as Tensor]);
    return {
      value: product(x as Tensor, w as Tensor, null, layout),
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => weightGrads(dy, saved[0]!, saved[1]!, layout)),
    };
  }) as unknown as (x: Tensor, w: Tensor) => Tensor;
  const withBias = tf.customGrad((x, w, b, save) => {
    (save as tf.GradSaveFunc)([x as Tensor, w as Tensor]);
    return {
      value: product(x as Tensor, w as Tensor, b as Tensor, layout),
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => [...weightGrads(dy, saved[0]!, saved[1]!, layout), columnSums(dy)]),
    };
  }) as unknown as (x: Tensor, w: Tensor, b: Tensor) => Tensor;
  return { noBias, withBias };
}

const LINEAR = { out_in: makeLinear('out_in'), in_out: makeLinear('in_out') };

/** y = x W (+ b) for x of any rank ≥ 2; the product runs on the flattened [N, in] matrix. */
export function linear(x: Tensor, w: Tensor, b: Tensor | null, layout: WeightLayout): Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const outDim = layout === 'out_in' ? w.shape[0]! : w.shape[1]!;
  const x2 = x.rank === 2 ? x : reshape(x, [x.size / inDim, inDim]);
  const y = b ? LINEAR[layout].withBias(x2, w, b) : LINEAR[layout].noBias(x2, w);
  return x.rank === 2 ? y : reshape(y, [...x.shape.slice(0, -1), outDim]);
}
