import { tf, type Tensor } from '../../engine/tf.js';

/**
 * Wraps a `tf.customGrad` gradient function for memory: the work runs in `tf.tidy`, and both the tensors the
 * forward pass saved and the incoming gradient dy are released as soon as the gradient is computed.
 *
 * tfjs calls gradient functions outside any tidy scope, so every temporary they create (transposed weights, and
 * XNNPACK's packed copy of each) otherwise stays alive until the whole backward pass ends; and it frees saved
 * tensors only at the end too, so the activations of layer 1 outlive the gradients of layer 12. For GPT-2 124M
 * these two were more than the 4 GiB wasm heap could hold. Likewise tfjs keeps the gradient of every intermediate
 * tensor until the end; dy is the accumulated gradient of this op's output, read by nothing after this op. (Each
 * custom op's gradient runs once per backward pass; tfjs's own later dispose of the same tensors is a no-op.)
 */
export function tidyGrad<G extends Tensor | Tensor[]>(f: (dy: Tensor, saved: Tensor[]) => G): (dy: Tensor, saved: Tensor[]) => G {
  return (dy, saved) => {
    const grads = tf.tidy(() => f(dy, saved));
    for (const t of saved) t.dispose();
    if (!(Array.isArray(grads) ? grads : [grads]).includes(dy as G & Tensor)) dy.dispose();
    return grads;
  };
}

/** Whether a gradient tape is recording (we are inside tf.grads / tf.variableGrads). */
export function gradientsRecording(): boolean {
  return ((tf.engine() as unknown as { state: { gradientDepth?: number } }).state.gradientDepth ?? 0) > 0;
}
