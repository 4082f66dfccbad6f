/**
 * The backend self-test: a tiny model step written with plain tf ops (one-hot embedding, a gather, projection, batched and
 * transposed products, broadcasting, softmax, log-softmax cross-entropy, reductions over several axes, slices and
 * concatenation) whose value and gradients must agree with the cpu backend's. A backend missing a kernel fails
 * here, not mid-run. It uses only the engine, so the engine knows no model.
 */
import { tf } from './tf.js';

export function selfTestValues(): number[] {
  return tf.tidy(() => {
    const table = tf.variable(tf.tensor2d(Array.from({ length: 40 }, (_, i) => Math.sin(i)), [10, 4]));
    const w = tf.variable(tf.tensor2d(Array.from({ length: 16 }, (_, i) => Math.cos(i)), [4, 4]));
    const ids = tf.tensor1d([1, 2, 3, 4, 5, 9], 'int32');
    const targets = tf.tensor1d([2, 3, 4, 5, 9, 0], 'int32');
    const mask = tf.tensor1d([1, 1, 1, 1, 1, 0]);
    const positions = tf.tensor2d(Array.from({ length: 12 }, (_, i) => 0.1 * i), [3, 4]);
    const { value, grads } = tf.variableGrads(() => {
      // The embedding as a one-hot product (stock wasm has no UnsortedSegmentSum, the gradient of gather), plus a
      // gather from a constant table (positions).
      const rows = tf.add(tf.matMul(tf.oneHot(ids, 10), table), tf.gather(positions, tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32')));
      const x = tf.reshape(tf.matMul(rows, w, false, true), [2, 3, 4]);
      const scores = tf.div(tf.matMul(x, x, false, true), tf.scalar(2)); // (2, 3, 3)
      const att = tf.softmax(tf.add(scores, tf.tensor2d([[0, -1e9, -1e9], [0, 0, -1e9], [0, 0, 0]])), -1);
      const halves = tf.split(tf.matMul(att, x), 2, -1); // rotate-half style split and re-join
      const y = tf.concat([tf.neg(halves[1]!), tf.mul(halves[0]!, tf.sigmoid(halves[0]!))], -1);
      const h = tf.add(tf.reshape(tf.transpose(y, [1, 0, 2]), [6, 4]), tf.slice(tf.reshape(x, [6, 4]), [0, 0], [6, 4]));
      const normed = tf.mul(h, tf.rsqrt(tf.add(tf.mean(tf.square(h), -1, true), 1e-6)));
      const logp = tf.logSoftmax(tf.matMul(normed, table, false, true)); // (6, 10)
      const picked = tf.sum(tf.mul(logp, tf.oneHot(targets, 10)), -1);
      const nll = tf.neg(tf.div(tf.sum(tf.mul(picked, mask)), tf.sum(mask)));
      return tf.add(nll, tf.mul(tf.scalar(1e-3), tf.sum(tf.exp(tf.max(tf.reshape(x, [2, 3, 2, 2]), [1, 3]))))) as tf.Scalar;
    }, [table, w]);
    const out = [value.dataSync()[0]!, ...grads[table.name]!.dataSync(), ...grads[w.name]!.dataSync()];
    table.dispose();
    w.dispose();
    return out;
  });
}

/** ‖got − ref‖ / ‖ref‖. */
export function relativeError(got: number[], ref: number[]): number {
  const diff = Math.sqrt(got.reduce((s, v, i) => s + (v - ref[i]!) ** 2, 0));
  return diff / Math.sqrt(ref.reduce((s, v) => s + v * v, 0));
}
