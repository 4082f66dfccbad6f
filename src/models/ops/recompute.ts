import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';

/**
 * Activation recompute (gradient checkpointing) of y = f(inputs, variables, kept): the forward pass keeps only its
 * inputs and y, none of f's intermediates; the backward pass runs f again under a fresh gradient tape and
 * differentiates that run with the incoming dy. Trades one more forward of f for its activation memory.
 *
 * - `inputs`: tensors differentiated through (a block's input); saved, and passed to f again in the backward pass.
 * - `variables`: parameters differentiated through, which f reads itself (they outlive the backward pass, so they
 *   are not saved and f keeps reading them by name).
 * - `kept`: tensors f reads but needs no gradient for (masks, rotary tables): saved, so that they outlive the
 *   forward scope that made them.
 *
 * f is called twice and must compute the same function both times (the caller replays dropout seeds). tfjs's
 * customGrad returns gradients for its explicit inputs only, hence `variables` among them.
 */
export function recomputed(
  f: (inputs: Tensor[], kept: Tensor[]) => Tensor, inputs: Tensor[], variables: tf.Variable[], kept: Tensor[],
): Tensor {
  const nIn = inputs.length;
  const op = tf.customGrad((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    save([...inputs, ...kept]);
    return {
      value: f(inputs, kept),
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
        const xs = saved.slice(0, nIn);
        const keptAgain = saved.slice(nIn);
        const wrt: Tensor[] = [...xs, ...variables];
        const engine = tf.engine() as unknown as {
          state: { activeTape: unknown };
          gradients(f: () => Tensor, xs: Tensor[], dy: Tensor, allowNoGradients: boolean): { value: Tensor; grads: (Tensor | undefined)[] };
        };
        // The inner tape replaces the engine's and clears it when done; the outer backward pass still needs its own
        // (to free the saved tensors of the ops it has not reached yet), so it is put back.
        const outerTape = engine.state.activeTape;
        let grads: (Tensor | undefined)[];
        try {
          grads = engine.gradients(() => f(xs, keptAgain), wrt, dy, true).grads;
        } finally {
          engine.state.activeTape = outerTape;
        }
        return wrt.map((t, i) => grads[i] ?? tf.zerosLike(t));
      }),
    };
  }) as unknown as (...xs: Tensor[]) => Tensor;
  return op(...inputs, ...variables);
}
