/**
 * How models and optimizer updates are placed across processes. Trainers call only this interface and never branch
 * on the kind. `naive` is one process; `ddp` and `zero2` (one process per rank under mpirun) are declared here so
 * the flags exist, and refuse to start until their MPI engine lands.
 */
import type { Tensor } from '../engine/tf.js';

export const STRATEGIES = ['naive', 'ddp', 'zero2'] as const;
export type StrategyKind = (typeof STRATEGIES)[number];

export interface Strategy {
  readonly kind: StrategyKind;
  readonly rank: number;
  readonly worldSize: number;
  /** Rank 0: the one process that logs, prints and saves. */
  isMain(): boolean;
  /** Gradients averaged over ranks (naive: as they are). Consumes its input. */
  reduceGradients(grads: Map<string, Tensor>): Map<string, Tensor>;
  /** Metric values averaged over ranks. */
  reduceMetrics(metrics: Record<string, number>): Record<string, number>;
  /** This rank's share of a batch (naive: all of it). */
  shard<T>(items: T[]): T[];
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
    return metrics;
  }
  shard<T>(items: T[]): T[] {
    return items;
  }
}

export function createStrategy(kind: string): Strategy {
  if (!(STRATEGIES as readonly string[]).includes(kind)) {
    throw new Error(`unknown strategy "${kind}" (choose one of: ${STRATEGIES.join(', ')})`);
  }
  if (kind !== 'naive') {
    throw new Error(`--strategy ${kind} is not available yet in this version: use --strategy naive (one process)`);
  }
  return new NaiveStrategy();
}
