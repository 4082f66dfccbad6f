/**
 * Matrix products routed through the fastest form the active backend has.
 *
 * On wasm (XNNPACK) a 2-D product without transposes runs ~10× faster than the same product with `transposeA/B`,
 * and ~5× faster than any batched (3-D) product. tfjs's own matMul gradient uses the transposed forms, so these ops
 * carry custom gradients that transpose explicitly and then multiply in the fast form.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';

// The switches live in the engine (initBackend sets them); re-exported for the ops and tests that read them here.
import { fastTransposedProducts, isUnbatched } from '../../engine/product_forms.js';
export { fastTransposedProducts, isUnbatched, setFastTransposedProducts, setUnbatchedMatmul } from '../../engine/product_forms.js';

/**
 * Sums of a [N, M] matrix over its rows → [M] (bias gradients). tfjs reduces a leading axis by transposing first
 * (slow on wasm); on wasm a ones[1, N] · x product does it in one fast pass.
 */
export function columnSums(x: Tensor): Tensor {
  if (tf.getBackend() !== 'wasm') return tf.sum(x, 0);
  const [N, M] = x.shape as [number, number];
  return tf.reshape(tf.matMul(tf.ones([1, N]), x), [M]);
}

function transpose2d(x: Tensor): Tensor {
  return tf.transpose(x, [1, 0]);
}

/** a[M,K] @ b[K,N] with fast-form gradients. */
export const matmul2d: (a: Tensor, b: Tensor) => Tensor = tf.customGrad((a, b, save) => {
  (save as tf.GradSaveFunc)([a as Tensor, b as Tensor]);
  return {
    value: tf.matMul(a as Tensor, b as Tensor),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sa, sb] = saved as [Tensor, Tensor];
      if (fastTransposedProducts()) return [tf.matMul(dy, sb, false, true), tf.matMul(sa, dy, true, false)];
      return [tf.matMul(dy, transpose2d(sb)), tf.matMul(transpose2d(sa), dy)];
    }),
  };
}) as unknown as (a: Tensor, b: Tensor) => Tensor;

function bmmRaw(a: Tensor, b: Tensor): Tensor {
  if (!isUnbatched()) return tf.matMul(a, b);
  const as = tf.unstack(a);
  const bs = tf.unstack(b);
  const out = tf.stack(as.map((x, i) => tf.matMul(x, bs[i]!)));
  for (const t of as) t.dispose();
  for (const t of bs) t.dispose();
  return out;
}

function transposeLast2(x: Tensor): Tensor {
  return tf.transpose(x, [0, 2, 1]);
}

/** Batched product a[B,M,K] @ b[B,K,N] with fast-form gradients. */
export const bmm: (a: Tensor, b: Tensor) => Tensor = tf.customGrad((a, b, save) => {
  (save as tf.GradSaveFunc)([a as Tensor, b as Tensor]);
  return {
    value: bmmRaw(a as Tensor, b as Tensor),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sa, sb] = saved as [Tensor, Tensor];
      if (fastTransposedProducts() && !isUnbatched()) return [tf.matMul(dy, sb, false, true), tf.matMul(sa, dy, true, false)];
      return [bmmRaw(dy, transposeLast2(sb)), bmmRaw(transposeLast2(sa), dy)];
    }),
  };
}) as unknown as (a: Tensor, b: Tensor) => Tensor;
