/**
 * Embedding lookup whose gradient does not need `UnsortedSegmentSum` (missing on the wasm backend): where the backend
 * lacks it, the rows are scatter-added on the host, which for the cpu/wasm backends is the same memory anyway.
 */
import { tf, type Tensor } from '../../engine/tf.js';

function hasSegmentSum(): boolean {
  return tf.getKernel('UnsortedSegmentSum', tf.getBackend()) !== undefined;
}

const hostScatterGather = tf.customGrad((table, ids, save) => {
  (save as tf.GradSaveFunc)([ids as Tensor]);
  const t = table as Tensor;
  const [V, C] = t.shape as [number, number];
  return {
    value: tf.gather(t, ids as Tensor),
    gradFunc: (dy: Tensor, saved: Tensor[]) => {
      const idx = saved[0]!.dataSync();
      const g = dy.dataSync();
      const out = new Float32Array(V * C);
      for (let i = 0; i < idx.length; i++) {
        const row = idx[i]! * C;
        const src = i * C;
        for (let c = 0; c < C; c++) out[row + c] += g[src + c]!;
      }
      return [tf.tensor2d(out, [V, C]), tf.zerosLike(saved[0]!)];
    },
  };
}) as unknown as (table: Tensor, ids: Tensor) => Tensor;

/** table[V,C] gathered at int32 ids of any shape → [...ids.shape, C]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const flat = tf.reshape(ids, [-1]);
  const rows = hasSegmentSum() ? tf.gather(table, flat) : hostScatterGather(table, flat);
  return tf.reshape(rows, [...ids.shape, table.shape[1]!]);
}
