/**
 * Embedding lookup whose gradient does not need `UnsortedSegmentSum`: wasm lacks the kernel and cpu's is
 * O(ids × vocab) slow, so on those (host-memory) backends the rows are scatter-added on the host; GPU and native
 * backends keep tfjs's own gather gradient.
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';

function nativeGatherGrad(): boolean {
  const b = tf.getBackend();
  return b !== 'cpu' && b !== 'wasm' && tf.getKernel('UnsortedSegmentSum', b) !== undefined;
}

const hostScatterGather = tf.customGrad((table, ids, save) => {
  (save as tf.GradSaveFunc)([ids as Tensor]);
  const t = table as Tensor;
  const [V, C] = t.shape as [number, number];
  return {
    value: tf.gather(t, ids as Tensor),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const idx = saved[0]!.dataSync();
      const g = dy.dataSync();
      const out = new Float32Array(V * C);
      for (let i = 0; i < idx.length; i++) {
        const row = idx[i]! * C;
        const src = i * C;
        for (let c = 0; c < C; c++) out[row + c] += g[src + c]!;
      }
      return [tf.tensor2d(out, [V, C]), tf.zerosLike(saved[0]!)];
    }),
  };
}) as unknown as (table: Tensor, ids: Tensor) => Tensor;

/** table[V,C] gathered at int32 ids of any shape → [...ids.shape, C]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const flat = tf.reshape(ids, [-1]);
  const rows = nativeGatherGrad() ? tf.gather(table, flat) : hostScatterGather(table, flat);
  return tf.reshape(rows, [...ids.shape, table.shape[1]!]);
}
