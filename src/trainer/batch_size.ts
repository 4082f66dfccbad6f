/**
 * Global vs micro batch (PaddleNLP's and Megatron's `--global_batch_size` / `--micro_batch_size`): the samples of one
 * optimizer step across all ranks, G, and the samples of one forward/backward on one rank, m. Accumulation follows:
 * G = m × accumulation × ranks. Without G, the batch is `--batch_size` per rank × `--accumulation_steps`, as before.
 */

export interface BatchFlags {
  /** `--global_batch_size`: samples per optimizer step, all ranks together. */
  globalBatchSize?: number;
  /** `--micro_batch_size`: samples per forward/backward on one rank (default: `--batch_size`). */
  microBatchSize?: number;
  /** `--batch_size`: samples per micro-batch on one rank. */
  batchSize: number;
  /** `--accumulation_steps`: micro-batches per optimizer step. */
  accumulationSteps: number;
}

export interface DerivedBatch {
  /** Samples per micro-batch on one rank. */
  batchSize: number;
  accumulationSteps: number;
  /** Samples per optimizer step, all ranks together. */
  globalBatchSize: number;
  /** What was derived, for the run's log (null when nothing was). */
  note: string | null;
}

const positiveInt = (v: number, flag: string) => {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${flag} must be an integer >= 1, got ${v}`);
};

/**
 * Per-rank micro-batch and accumulation for `worldSize` ranks.
 * 1. no --global_batch_size: micro = --micro_batch_size ?? --batch_size, accumulation = --accumulation_steps.
 * 2. with it: micro = --micro_batch_size ?? --batch_size; accumulation = G / (micro × ranks), which must be a whole
 *    number >= 1; an --accumulation_steps other than 1 must agree with it.
 */
export function deriveBatch(flags: BatchFlags, worldSize: number): DerivedBatch {
  positiveInt(worldSize, 'the number of ranks');
  positiveInt(flags.batchSize, '--batch_size');
  positiveInt(flags.accumulationSteps, '--accumulation_steps');
  if (flags.microBatchSize !== undefined) positiveInt(flags.microBatchSize, '--micro_batch_size');
  const micro = flags.microBatchSize ?? flags.batchSize;
  if (flags.globalBatchSize === undefined) {
    const accumulation = flags.accumulationSteps;
    return { batchSize: micro, accumulationSteps: accumulation, globalBatchSize: micro * accumulation * worldSize, note: null };
  }
  const G = flags.globalBatchSize;
  positiveInt(G, '--global_batch_size');
  const perStep = micro * worldSize;
  if (G % perStep !== 0) {
    throw new Error(
      `--global_batch_size ${G} is not a multiple of --micro_batch_size ${micro} × ${worldSize} rank(s) = ${perStep}: ` +
        `no whole number of accumulation steps gives it; choose a global batch that is a multiple of ${perStep}`,
    );
  }
  const accumulation = G / perStep;
  if (flags.accumulationSteps !== 1 && flags.accumulationSteps !== accumulation) {
    throw new Error(
      `--accumulation_steps ${flags.accumulationSteps} disagrees with --global_batch_size ${G} = --micro_batch_size ${micro} × ` +
        `${worldSize} rank(s) × ${accumulation} accumulation steps: drop --accumulation_steps (it is derived)`,
    );
  }
  return {
    batchSize: micro, accumulationSteps: accumulation, globalBatchSize: G,
    note: `global batch ${G} = micro-batch ${micro} × ${accumulation} accumulation step(s) × ${worldSize} rank(s)`,
  };
}

/**
 * One rank's share of a global count that every rank takes equally (GRPO's prompts per step): global / ranks, which
 * must be a whole number >= 1.
 */
export function perRankShare(global: number, worldSize: number, flag: string): number {
  positiveInt(global, flag);
  positiveInt(worldSize, 'the number of ranks');
  if (global % worldSize !== 0) throw new Error(`${flag} ${global} is not a multiple of the ${worldSize} ranks: every rank takes the same share; choose a multiple of ${worldSize}`);
  return global / worldSize;
}
