/**
 * Batching: pad token sequences into rectangles, and a loader that shuffles with a seeded RNG every epoch and can
 * resume mid-epoch from a checkpointed position.
 */
import { Rng } from '../engine/rng.js';
import { IGNORE_INDEX } from './sft_samples.js';

/** A padded batch; every row has the same length. attentionMask is 1 on real tokens, 0 on padding. */
export interface Batch {
  inputIds: number[][];
  attentionMask: number[][];
  /**
   * Aligned with inputIds (the loss shifts them by one), or one longer in every row: then the extra label is the
   * target of the last input position (token-file blocks, nanoGPT's y).
   */
  labels: number[][];
}

export interface PadOptions {
  padTokenId: number;
  /** 'right' for training (default); 'left' for generation prompts, so every row ends where generation starts. */
  side?: 'right' | 'left';
  /** Round the padded length up to a multiple of this (fewer distinct shapes for the backend to compile). */
  padToMultipleOf?: number;
}

/**
 * Pad samples to the longest one; labels are padded with -100 (samples without labels get all -100). Labels are as
 * long as the inputs, or (every sample alike) one longer: the target past the last input (see `Batch.labels`).
 */
export function padBatch(samples: { inputIds: number[]; labels?: number[] }[], opts: PadOptions): Batch {
  if (samples.length === 0) throw new Error('padBatch: no samples');
  const first = samples[0]!;
  const extra = first.labels !== undefined && first.labels.length === first.inputIds.length + 1 ? 1 : 0;
  let width = Math.max(...samples.map((s) => s.inputIds.length));
  if (opts.padToMultipleOf && opts.padToMultipleOf > 1) width = Math.ceil(width / opts.padToMultipleOf) * opts.padToMultipleOf;
  const left = opts.side === 'left';
  const pad = <V>(row: V[], fill: V, to = width): V[] => {
    const padding = new Array<V>(to - row.length).fill(fill);
    return left ? [...padding, ...row] : [...row, ...padding];
  };
  return {
    inputIds: samples.map((s) => pad(s.inputIds, opts.padTokenId)),
    attentionMask: samples.map((s) => pad(new Array<number>(s.inputIds.length).fill(1), 0)),
    labels: samples.map((s, i) => {
      const labels = s.labels ?? new Array<number>(s.inputIds.length + extra).fill(IGNORE_INDEX);
      if (labels.length !== s.inputIds.length + extra) {
        const want = extra ? `${s.inputIds.length + 1} (one past the inputs, as sample 0)` : `${s.inputIds.length}`;
        throw new Error(`padBatch: sample ${i} has ${s.inputIds.length} inputIds and ${labels.length} labels, not ${want}`);
      }
      // Left padding keeps the extra target after the last input; right padding puts -100 after it.
      return pad(labels, IGNORE_INDEX, width + extra);
    }),
  };
}

/** Where a loader is: the NEXT batch to produce is batch `index` of epoch `epoch`. Save it in checkpoints. */
export interface LoaderPosition {
  epoch: number;
  index: number;
}

export interface LoaderOptions<T, B> {
  batchSize: number;
  /** Reshuffle every epoch (default true); the order of epoch e depends only on (seed, e). */
  shuffle?: boolean;
  seed?: number;
  /** Drop the last, smaller batch of an epoch (default false). */
  dropLast?: boolean;
  /**
   * Items with the same key stay next to each other in every epoch's order (the groups shuffled, and the items
   * within each group), so a batch holds few groups: e.g. the comparisons of one prompt, whose shared answers are
   * then scored once per batch. Undefined: items shuffle independently.
   */
  groupOf?: (item: T) => string;
  /** Items -> batch, e.g. `(xs) => padBatch(xs, {padTokenId})`. */
  collate: (items: T[]) => B;
}

/**
 * `order` with each group's items brought together: groups in a shuffled order (rng) or in order of first appearance
 * (no rng), each group's items in the order `order` visits them.
 */
export function groupedOrder<T>(order: readonly number[], items: readonly T[], groupOf: (item: T) => string, rng: Rng | null): number[] {
  const groups = new Map<string, number[]>();
  for (const i of order) {
    const key = groupOf(items[i]!);
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  }
  const lists = [...groups.values()];
  const visit = rng ? rng.permutation(lists.length) : lists.map((_, i) => i);
  return visit.flatMap((g) => lists[g]!);
}

export class BatchLoader<T, B> {
  private readonly items: readonly T[];
  private readonly opts: Required<Omit<LoaderOptions<T, B>, 'groupOf'>> & Pick<LoaderOptions<T, B>, 'groupOf'>;
  private pos: LoaderPosition = { epoch: 0, index: 0 };
  private cachedOrder: { epoch: number; order: number[] } | undefined;

  constructor(items: readonly T[], opts: LoaderOptions<T, B>) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize <= 0) {
      throw new Error(`batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    this.items = items;
    this.opts = { shuffle: true, seed: 42, dropLast: false, ...opts };
    if (this.batchesPerEpoch === 0) {
      const why = `${items.length} items with batchSize ${opts.batchSize}${this.opts.dropLast ? ' and dropLast' : ''}`;
      throw new Error(`no batches: ${why}`);
    }
  }

  get batchesPerEpoch(): number {
    const n = this.items.length;
    return this.opts.dropLast ? Math.floor(n / this.opts.batchSize) : Math.ceil(n / this.opts.batchSize);
  }

  get position(): LoaderPosition {
    return { ...this.pos };
  }

  /** Continue from a position saved with `position` (e.g. from a checkpoint). */
  restore(pos: LoaderPosition): void {
    const isCount = (x: number): boolean => Number.isInteger(x) && x >= 0;
    if (!isCount(pos.epoch) || !isCount(pos.index) || pos.index > this.batchesPerEpoch) {
      throw new Error(`invalid loader position ${JSON.stringify(pos)} (epochs have ${this.batchesPerEpoch} batches)`);
    }
    this.pos = pos.index === this.batchesPerEpoch ? { epoch: pos.epoch + 1, index: 0 } : { ...pos };
  }

  /** Item indices in the order epoch `epoch` visits them. */
  order(epoch: number): number[] {
    if (this.cachedOrder?.epoch === epoch) return this.cachedOrder.order;
    const n = this.items.length;
    // A distinct, reproducible stream per epoch, so resuming needs only (epoch, index).
    const rng = new Rng((this.opts.seed + Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
    let order = this.opts.shuffle ? rng.permutation(n) : Array.from({ length: n }, (_, i) => i);
    if (this.opts.groupOf) order = groupedOrder(order, this.items, this.opts.groupOf, this.opts.shuffle ? rng : null);
    this.cachedOrder = { epoch, order };
    return order;
  }

  /** The next batch, rolling over into the next epoch at the end of one. */
  next(): { batch: B; epoch: number; index: number } {
    const { epoch, index } = this.pos;
    const bs = this.opts.batchSize;
    const ids = this.order(epoch).slice(index * bs, (index + 1) * bs);
    const batch = this.opts.collate(ids.map((i) => this.items[i]!));
    this.pos = index + 1 >= this.batchesPerEpoch ? { epoch: epoch + 1, index: 0 } : { epoch, index: index + 1 };
    return { batch, epoch, index };
  }

  /** The remaining batches of the current epoch (all of them when at its start). */
  *epochBatches(): Generator<B> {
    const epoch = this.pos.epoch;
    while (this.pos.epoch === epoch) yield this.next().batch;
  }
}
