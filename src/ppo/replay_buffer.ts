/**
 * The rollouts of one episode, served as shuffled minibatches for the PPO update. Items from different rollout batches
 * (different prompt and answer lengths) are re-padded together: prompts on the left to a common P, answers on the
 * right to a common N, so answer token t sits at position P + t in every row.
 */
import type { Rng } from '../engine/rng.js';
import type { ExperienceItem } from './experience.js';

/** A collated minibatch; every [B][N] array is 0 where actionMask is 0. */
export interface TrainBatch {
  /** [B, P + N] */
  inputIds: number[][];
  attentionMask: number[][];
  /** [B, N] */
  answer: number[][];
  actionMask: number[][];
  logProbs: number[][];
  values: number[][];
  advantages: number[][];
  returns: number[][];
  promptLength: number;
  answerLength: number;
}

export function collate(items: ExperienceItem[], padTokenId: number): TrainBatch {
  if (!items.length) throw new Error('collate: no experience items');
  const P = Math.max(...items.map((it) => it.prompt.length));
  const N = Math.max(1, ...items.map((it) => it.answer.length));
  const right = (xs: number[], fill: number) => [...xs, ...new Array<number>(N - xs.length).fill(fill)];
  const batch: TrainBatch = {
    inputIds: [], attentionMask: [], answer: [], actionMask: [], logProbs: [], values: [], advantages: [], returns: [],
    promptLength: P, answerLength: N,
  };
  for (const it of items) {
    const padLeft = P - it.prompt.length;
    const action = right(it.answer.map(() => 1), 0);
    batch.inputIds.push([...new Array<number>(padLeft).fill(padTokenId), ...it.prompt, ...right(it.answer, padTokenId)]);
    batch.attentionMask.push([...new Array<number>(padLeft).fill(0), ...it.prompt.map(() => 1), ...action]);
    batch.answer.push(right(it.answer, padTokenId));
    batch.actionMask.push(action);
    batch.logProbs.push(right(it.logProbs, 0));
    batch.values.push(right(it.values, 0));
    batch.advantages.push(right(it.advantages, 0));
    batch.returns.push(right(it.returns, 0));
  }
  return batch;
}

export class ReplayBuffer {
  private items: ExperienceItem[] = [];

  constructor(private readonly padTokenId: number) {}

  add(items: ExperienceItem[]): void {
    this.items.push(...items);
  }

  get size(): number {
    return this.items.length;
  }

  /** One pass over the buffer in a fresh random order, as minibatches of at most `batchSize` items. */
  minibatches(batchSize: number, rng: Rng): TrainBatch[] {
    if (!this.items.length) throw new Error('ReplayBuffer.minibatches: the buffer is empty');
    const order = rng.permutation(this.items.length);
    const out: TrainBatch[] = [];
    for (let i = 0; i < order.length; i += batchSize) {
      out.push(collate(order.slice(i, i + batchSize).map((j) => this.items[j]!), this.padTokenId));
    }
    return out;
  }

  clear(): void {
    this.items = [];
  }
}
