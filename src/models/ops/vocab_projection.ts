/**
 * The LM head product logits[N, V] = h[N, C] · W[V, C]ᵀ for a head stored as [V, C] (a tied embedding), with its
 * gradients, without ever transposing the whole V×C matrix twice.
 *
 * On wasm only untransposed 2-D products are fast, and XNNPACK slows to about half speed once one operand spans the
 * whole vocabulary (it streams the packed V-wide operand once per few rows). So the product runs over vocabulary
 * chunks: each chunk of W (contiguous rows) is transposed and multiplied separately. Backward, per chunk:
 * dh += dy_c · W_c (no transpose), dW_c = (hᵀ · dy_c)ᵀ. Other backends run one product with tfjs's transposes.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { fastTransposedProducts } from './matmul.js';

/** Vocabulary rows per chunk: ~4k keeps the packed operand of each product within a few MiB. */
export const VOCAB_CHUNK = 4096;

function chunkSizes(V: number): number[] {
  const sizes: number[] = [];
  for (let v = 0; v < V; v += VOCAB_CHUNK) sizes.push(Math.min(VOCAB_CHUNK, V - v));
  return sizes;
}

const chunkedProjection = tf.customGrad((h, w, save) => {
  const x = h as Tensor;
  const W = w as Tensor;
  const [V, C] = W.shape as [number, number];
  (save as tf.GradSaveFunc)([x, W]);
  const sizes = chunkSizes(V);
  const outs: Tensor[] = [];
  let v0 = 0;
  for (const vc of sizes) {
    outs.push(tf.matMul(x, tf.transpose(tf.slice(W, [v0, 0], [vc, C]), [1, 0]))); // (N, vc)
    v0 += vc;
  }
  return {
    value: outs.length === 1 ? outs[0]! : tf.concat(outs, 1),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sx, sW] = saved as [Tensor, Tensor];
      const N = sx.shape[0]!;
      const xT = tf.transpose(sx, [1, 0]); // (C, N)
      let dx: Tensor | null = null;
      const dWs: Tensor[] = [];
      let v0 = 0;
      // One chunk at a time, each in its own tidy, so only one chunk's temporaries are alive at once.
      for (const vc of sizes) {
        const { part, dWc } = tf.tidy(() => {
          const dyc = sizes.length === 1 ? dy : tf.slice(dy, [0, v0], [N, vc]); // (N, vc)
          const Wc = tf.slice(sW, [v0, 0], [vc, C]); // (vc, C)
          // Transpose whichever side is smaller: the [C, vc] product or the [N, vc] gradient slice.
          const dWc = N >= C ? tf.transpose(tf.matMul(xT, dyc), [1, 0]) : tf.matMul(tf.transpose(dyc, [1, 0]), sx);
          return { part: tf.matMul(dyc, Wc), dWc }; // (N, C), (vc, C)
        });
        if (dx) {
          const sum: Tensor = tf.add(dx, part);
          dx.dispose();
          part.dispose();
          dx = sum;
        } else dx = part;
        dWs.push(dWc);
        v0 += vc;
      }
      return [dx!, dWs.length === 1 ? dWs[0]! : tf.concat(dWs, 0)];
    }),
  };
}) as unknown as (h: Tensor, w: Tensor) => Tensor;

/** h[N, C] · w[V, C]ᵀ → [N, V]. */
export function projectToVocab(h: Tensor, w: Tensor): Tensor {
  if (tf.getBackend() === 'wasm' && !fastTransposedProducts()) return chunkedProjection(h, w);
  return tf.matMul(h, w, false, true);
}
