/**
 * How models and optimizer updates are placed across processes. Trainers call only this interface and never branch
 * on the kind:
 * - `naive`: one process.
 * - `ddp`: one process per rank under mpirun; each rank takes its share of every batch, gradients are averaged over
 *   ranks before the step, so every rank holds the same weights after every step.
 * - `zero2`: as ddp, but gradients are reduce-scattered, each rank keeps and updates only its 1/N slice of the
 *   AdamW state and of the parameters, then the parameters are all-gathered (see zero2.ts).
 * LoRA is orthogonal: the trainer hands Optimization only the adapters, and only they are communicated.
 *
 * Rules for trainers running under ddp/zero2 (every rank runs the same program):
 * - every rank makes the same collective calls in the same order: `Optimization.step`, `reduceMetrics`, `anyRank`,
 *   `barrier`, `saveOnMain`; a rank that skips one leaves the others waiting until the collective timeout;
 * - batches: `createLoader` (or `shard` on each global batch) gives each rank an equal share, so every rank takes
 *   the same number of steps; `--batch_size` is per rank, the global batch is batch_size x world size;
 * - stopping early (Ctrl-C): decide with `anyRank(interrupt.requested)` so all ranks stop at the same step;
 * - saving: `saveOnMain` on every rank (zero2 gathers the optimizer state), printing: `logMain`.
 */
import { BatchLoader, type LoaderOptions } from '../data/batching.js';
import type { Tensor, Variable } from '../engine/tf.js';
import type { AdamWConfig } from '../trainer/adamw.js';
import type { ShardedUpdate } from '../trainer/optimization.js';
import { DdpStrategy } from './ddp.js';
import { mpiWorld } from './mpi.js';
import { Zero2Strategy } from './zero2.js';

export const STRATEGIES = ['naive', 'ddp', 'zero2'] as const;
export type StrategyKind = (typeof STRATEGIES)[number];

/** How `reduceMetrics` combines a metric over ranks. */
export type MetricReduction = 'mean' | 'sum' | 'max';

/** What `saveOnMain` needs of an optimizer (Optimization has it). */
export interface GatherableOptimizer {
  /** Collective under zero2: the full state, kept until released. */
  gatherStateDict(): unknown;
  releaseStateDict(): void;
}

export interface Strategy {
  readonly kind: StrategyKind;
  readonly rank: number;
  readonly worldSize: number;
  /** Rank 0: the one process that logs, prints and saves. */
  isMain(): boolean;
  /**
   * Gradients averaged over ranks (naive: as they are). Consumes its input. Every rank must pass the same names,
   * shapes and order (Optimization does).
   */
  reduceGradients(grads: Map<string, Tensor>): Map<string, Tensor>;
  /** Metric values combined over ranks (default: the mean); every rank must pass the same keys. */
  reduceMetrics(metrics: Record<string, number>, reduction?: MetricReduction): Record<string, number>;
  /**
   * This rank's share of `items` (naive: all of them): items rank, rank + N, rank + 2N, ...; when N does not divide
   * the count, the last round wraps around to the first items (as torch's DistributedSampler pads), so every rank
   * gets the same number and so takes the same number of steps.
   */
  shard<T>(items: readonly T[]): T[];
  /**
   * A loader whose batches are this rank's share of global batches of `batchSize x worldSize` items. Every rank
   * shuffles with the same seed, so N ranks together see exactly the batches one process with the N-times batch
   * would see (the basis of the naive == ddp equivalence), and positions saved for --resume are global.
   */
  createLoader<T, B>(items: readonly T[], opts: LoaderOptions<T, B>): BatchLoader<T, B>;
  /** True on every rank when `flag` is true on any rank (e.g. an interrupt), so all ranks stop at the same step. */
  anyRank(flag: boolean): boolean;
  /** Waits until every rank gets here. */
  barrier(): void;
  /** Overwrites the variables with rank 0's values (naive: nothing to do). Optimization calls it at construction. */
  broadcastParameters(vars: readonly Variable[]): void;
  /** zero2's sharded optimizer step; null where every rank keeps the full AdamW state (naive, ddp). */
  createShardedUpdate(params: [string, Variable][], config: AdamWConfig): ShardedUpdate | null;
  /**
   * Saving, called on EVERY rank: gathers the optimizers' states (collective under zero2), runs `write` on the main
   * rank only (it may call `optimization.stateDict()` and `saveCheckpoint`), then waits until it has finished so
   * that no rank reads a half-written checkpoint. Returns `write`'s result on the main rank, undefined elsewhere.
   */
  saveOnMain<T>(optimizers: readonly GatherableOptimizer[], write: () => Promise<T>): Promise<T | undefined>;
  /** Prints a progress note on the main rank only (stderr). */
  logMain(message: string): void;
}

class NaiveStrategy implements Strategy {
  readonly kind = 'naive' as const;
  readonly rank = 0;
  readonly worldSize = 1;
  isMain(): boolean {
    return true;
  }
  reduceGradients(grads: Map<string, Tensor>): Map<string, Tensor> {
    return grads;
  }
  reduceMetrics(metrics: Record<string, number>): Record<string, number> {
    return { ...metrics };
  }
  shard<T>(items: readonly T[]): T[] {
    return [...items];
  }
  createLoader<T, B>(items: readonly T[], opts: LoaderOptions<T, B>): BatchLoader<T, B> {
    return new BatchLoader(items, opts);
  }
  anyRank(flag: boolean): boolean {
    return flag;
  }
  barrier(): void {}
  broadcastParameters(): void {}
  createShardedUpdate(): null {
    return null;
  }
  async saveOnMain<T>(_optimizers: readonly GatherableOptimizer[], write: () => Promise<T>): Promise<T> {
    return write();
  }
  logMain(message: string): void {
    console.error(message);
  }
}

/** The strategy for one process. */
export function naiveStrategy(): Strategy {
  return new NaiveStrategy();
}

/**
 * The strategy named by `--strategy`. `ddp` and `zero2` need the MPI addon and a process started by mpirun; without
 * them this throws a message saying what to install or how to launch. `naive` never touches MPI.
 */
export function createStrategy(kind: string): Strategy {
  if (!(STRATEGIES as readonly string[]).includes(kind)) {
    throw new Error(`unknown strategy "${kind}" (choose one of: ${STRATEGIES.join(', ')})`);
  }
  if (kind === 'naive') return new NaiveStrategy();
  // The addon loads here, not at import: naive runs never need MPI.
  const comm = mpiWorld(`--strategy ${kind}`);
  return kind === 'ddp' ? new DdpStrategy(comm) : new Zero2Strategy(comm);
}
