/**
 * Affine maps over the last axis, for both weight layouts HF checkpoints use:
 * `out_in` (torch nn.Linear, weight [out, in]) and `in_out` (GPT-2's Conv1D, weight [in, out]).
 * Weights stay in their checkpoint layout so names, shapes and saved files match HF exactly; the gradients are
 * written out so every product runs in the fast untransposed 2-D form.
 */
import { tf, type Tensor } from '../../engine/tf.js';

export type WeightLayout = 'out_in' | 'in_out';

const linearOutIn = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x as Tensor, w as Tensor]);
  const wt = tf.transpose(w as Tensor, [1, 0]); // [in, out]
  return {
    value: tf.matMul(x as Tensor, wt),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [sx, sw] = saved as [Tensor, Tensor];
      // dx = dy[N,out] @ w[out,in]; dw = dy^T[out,N] @ x[N,in]
      return [tf.matMul(dy, sw), tf.matMul(tf.transpose(dy, [1, 0]), sx)];
    },
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

const linearInOut = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x as Tensor, w as Tensor]);
  return {
    value: tf.matMul(x as Tensor, w as Tensor),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const [sx, sw] = saved as [Tensor, Tensor];
      // dx = dy[N,out] @ w^T[out,in]; dw = x^T[in,N] @ dy[N,out]
      return [tf.matMul(dy, tf.transpose(sw, [1, 0])), tf.matMul(tf.transpose(sx, [1, 0]), dy)];
    },
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

/** y = x W (+ b) for x of any rank ≥ 2; the product runs on the flattened [N, in] matrix. */
export function linear(x: Tensor, w: Tensor, b: Tensor | null, layout: WeightLayout): Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const outDim = layout === 'out_in' ? w.shape[0]! : w.shape[1]!;
  const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inDim]);
  let y = layout === 'out_in' ? linearOutIn(x2, w) : linearInOut(x2, w);
  if (b) y = tf.add(y, b);
  return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
}
