/**
 * The one place the project imports TensorFlow.js from.
 *
 * Node resolves `@tensorflow/tfjs-core` to a CommonJS bundle that registers no kernel gradients, and its ESM files
 * use extensionless imports Node cannot load; the `@tensorflow/tfjs` bundle carries the gradients (and the
 * chained-op methods), so the engine comes from there. The project still writes ops in functional form
 * (`tf.mul(x, y)`), which reads the same in every backend.
 */
import * as tf from '@tensorflow/tfjs';

// PROD silences tfjs's console banners and skips debug-only checks.
tf.env().set('PROD', true);

export { tf };
export type Tensor = tf.Tensor;
export type Variable = tf.Variable;
export type Rank = tf.Rank;
