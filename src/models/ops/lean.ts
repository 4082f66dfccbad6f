/**
 * Shape-only and elementwise ops whose gradients need no saved tensors. tfjs's own Reshape and Add gradients save
 * their inputs (to read their shapes), and saved tensors live until the whole backward pass ends: every reshaped
 * activation and both sides of every residual add stayed in memory through the backward pass. These keep the
 * shapes in a closure instead, and (through `tidyGrad`) release their incoming gradient once used.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { dropoutMask } from './dropout_mask.js';

/** tf.reshape whose gradient keeps only the input shape. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const inShape = x.shape;
  const op = tf.customGrad((t, _save) => ({
    value: tf.reshape(t as Tensor, shape),
    gradFunc: tidyGrad((dy: Tensor) => tf.reshape(dy, inShape)),
  })) as unknown as (t: Tensor) => Tensor;
  return op(x);
}

/** a + b for tensors of one shape (a residual connection), saving nothing. */
export function add(a: Tensor, b: Tensor): Tensor {
  if (a.shape.join() !== b.shape.join()) throw new Error(`lean add: shapes [${a.shape}] and [${b.shape}] differ`);
  const op = tf.customGrad((x, y, _save) => ({
    value: tf.add(x as Tensor, y as Tensor),
    // Two handles on one buffer: tfjs may dispose either one when it accumulates.
    gradFunc: tidyGrad((dy: Tensor) => [tf.reshape(dy, dy.shape), tf.reshape(dy, dy.shape)]),
  })) as unknown as (x: Tensor, y: Tensor) => Tensor;
  return op(a, b);
}

/**
 * Inverted dropout (as tf.dropout: kept values scaled by 1/(1 − rate)) that saves only the scaled mask, not x.
 * The mask is tf.dropout's on ones (dropout_mask.ts), so the same seed drops the same elements as before.
 */
export function dropout(x: Tensor, rate: number, seed: number): Tensor {
  const op = tf.customGrad((t, save) => {
    const scaledMask = dropoutMask((t as Tensor).shape, rate, seed);
    (save as tf.GradSaveFunc)([scaledMask]);
    return {
      value: tf.mul(t as Tensor, scaledMask),
      gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => tf.mul(dy, saved[0]!)),
    };
  }) as unknown as (t: Tensor) => Tensor;
  return op(x);
}

/** tf.transpose that releases its incoming gradient once used (tfjs keeps it to the end of the backward pass). */
export function transpose(x: Tensor, perm: number[]): Tensor {
  const inverse = perm.map((_, i) => perm.indexOf(i));
  const op = tf.customGrad((t, _save) => ({
    value: tf.transpose(t as Tensor, perm),
    gradFunc: tidyGrad((dy: Tensor) => tf.transpose(dy, inverse)),
  })) as unknown as (t: Tensor) => Tensor;
  return op(x);
}
