/**
 * `ddp`: data parallel over MPI. Every rank holds the full model and the full AdamW state, takes its share of every
 * global batch, and averages gradients with one all-reduce of the flattened gradients per optimizer step, so every
 * rank applies the same update and the weights stay equal on every rank.
 */
import type { Tensor, Variable } from '../engine/tf.js';
import type { BatchLoader, LoaderOptions } from '../data/batching.js';
import type { AdamWConfig } from '../trainer/adamw.js';
import type { ShardedUpdate } from '../trainer/optimization.js';
import { flatLayout, flatten, unflatten } from './flat_shards.js';
import type { Communicator } from './mpi.js';
import { shardedLoader, shardItems } from './sharding.js';
import type { GatherableOptimizer, MetricReduction, Strategy } from './strategy.js';

/** Divides every element by the world size, in place (float32, the same arithmetic on every rank). */
export function averageInPlace(flat: Float32Array, worldSize: number): void {
  const inv = 1 / worldSize;
  for (let i = 0; i < flat.length; i++) flat[i]! *= inv;
}

export class DdpStrategy implements Strategy {
  readonly kind: 'ddp' | 'zero2' = 'ddp';
  readonly rank: number;
  readonly worldSize: number;

  constructor(protected readonly comm: Communicator) {
    this.rank = comm.rank;
    this.worldSize = comm.size;
  }

  isMain(): boolean {
    return this.rank === 0;
  }

  reduceGradients(grads: Map<string, Tensor>): Map<string, Tensor> {
    const layout = flatLayout([...grads]);
    const flat = flatten(layout, grads);
    for (const g of grads.values()) g.dispose();
    this.comm.allreduce(flat, 'sum');
    averageInPlace(flat, this.worldSize);
    return unflatten(layout, flat);
  }

  reduceMetrics(metrics: Record<string, number>, reduction: MetricReduction = 'mean'): Record<string, number> {
    // Sorted keys: ranks may have built their objects in different orders.
    const keys = Object.keys(metrics).sort();
    const values = Float64Array.from(keys, (k) => metrics[k]!);
    this.comm.allreduce(values, reduction === 'max' ? 'max' : 'sum');
    const out: Record<string, number> = {};
    keys.forEach((k, i) => (out[k] = reduction === 'mean' ? values[i]! / this.worldSize : values[i]!));
    return out;
  }

  shard<T>(items: readonly T[]): T[] {
    return shardItems(items, this.rank, this.worldSize);
  }

  createLoader<T, B>(items: readonly T[], opts: LoaderOptions<T, B>): BatchLoader<T, B> {
    return shardedLoader(items, opts, this.rank, this.worldSize);
  }

  anyRank(flag: boolean): boolean {
    const v = new Float64Array([flag ? 1 : 0]);
    this.comm.allreduce(v, 'max');
    return v[0]! > 0;
  }

  barrier(): void {
    this.comm.barrier();
  }

  broadcastParameters(vars: readonly Variable[]): void {
    const layout = flatLayout(vars.map((v, i) => [String(i), v] as const));
    const flat = flatten(layout, new Map(vars.map((v, i) => [String(i), v as Tensor])));
    this.comm.broadcast(flat, 0);
    if (this.rank === 0) return;
    const values = unflatten(layout, flat);
    vars.forEach((v, i) => {
      const t = values.get(String(i))!;
      v.assign(t);
      t.dispose();
    });
  }

  createShardedUpdate(_params: [string, Variable][], _config: AdamWConfig): ShardedUpdate | null {
    return null;
  }

  async saveOnMain<T>(optimizers: readonly GatherableOptimizer[], write: () => Promise<T>): Promise<T | undefined> {
    for (const o of optimizers) o.gatherStateDict();
    let result: T | undefined;
    try {
      if (this.isMain()) result = await write();
    } finally {
      for (const o of optimizers) o.releaseStateDict();
    }
    this.comm.barrier();
    return result;
  }

  logMain(message: string): void {
    if (this.isMain()) console.error(message);
  }
}

