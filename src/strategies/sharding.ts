/**
 * Rank-aware data sharding: which items of a batch (or of a dataset) a rank takes, and a loader built on it.
 */
import { BatchLoader, type LoaderOptions } from '../data/batching.js';

/**
 * Rank `rank`'s share of `items` among `worldSize` ranks: strided, and padded by wrapping around so that every rank
 * gets ceil(n / worldSize) items.
 */
export function shardItems<T>(items: readonly T[], rank: number, worldSize: number): T[] {
  if (worldSize === 1) return [...items];
  const n = items.length;
  if (n === 0) return [];
  const perRank = Math.ceil(n / worldSize);
  const out: T[] = [];
  for (let k = 0; k < perRank; k++) out.push(items[(rank + k * worldSize) % n]!);
  return out;
}

/** A loader over global batches of `batchSize x worldSize` items, each rank collating its shard (see Strategy). */
export function shardedLoader<T, B>(
  items: readonly T[], opts: LoaderOptions<T, B>, rank: number, worldSize: number,
): BatchLoader<T, B> {
  if (worldSize === 1) return new BatchLoader(items, opts);
  return new BatchLoader(items, {
    ...opts,
    batchSize: opts.batchSize * worldSize,
    collate: (global: T[]) => opts.collate(shardItems(global, rank, worldSize)),
  });
}
