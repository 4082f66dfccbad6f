/**
 * REINFORCE++ advantages under mpirun: each rank takes its rows of one fixed batch (unequal shares: rank 0 the first
 * `split` rows, rank 1 the rest) and whitens them through the ddp strategy's all-reduce, as train_grpo does.
 *
 *   mpirun -np 2 node --import tsx test/grpo_advantages_worker.ts <out dir>
 *
 * Writes `<out>/rank<r>.json`: { rows, advantages } (its rows' indices in the whole batch and their advantages).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeAdvantages } from '../src/grpo/advantages.js';
import { createStrategy } from '../src/strategies/strategy.js';

/** A batch of 6 completions of different lengths, with reference log-probs (β 0.1): the same on every rank. */
export function reinforceBatch() {
  const B = 6;
  const N = 5;
  const lengths = [5, 2, 4, 1, 3, 5];
  const mask = lengths.map((n) => Array.from({ length: N }, (_, t) => (t < n ? 1 : 0)));
  const wave = (b: number, t: number, k: number) => -1 - 0.3 * Math.sin(1.7 * b + k * t);
  return {
    rewards: [1, 0, 0.5, 2, -1, 0.25],
    oldLogps: Array.from({ length: B }, (_, b) => Array.from({ length: N }, (_, t) => wave(b, t, 0.9))),
    refLogps: Array.from({ length: B }, (_, b) => Array.from({ length: N }, (_, t) => wave(b, t, 1.3))),
    mask,
    klCoef: 0.1,
    split: 2,
  };
}

if (process.argv[1]?.endsWith('grpo_advantages_worker.ts')) {
  const out = process.argv[2]!;
  const ddp = createStrategy('ddp');
  const x = reinforceBatch();
  const rows = ddp.rank === 0 ? [0, 1] : [2, 3, 4, 5];
  const pick = <T>(a: T[]) => rows.map((b) => a[b]!);
  const advantages = computeAdvantages('reinforce_pp', {
    rewards: pick(x.rewards), G: 1, oldLogps: pick(x.oldLogps), refLogps: pick(x.refLogps), mask: pick(x.mask), klCoef: x.klCoef,
    sumOverRanks: (local) => ddp.reduceMetrics(local, 'sum'),
  });
  writeFileSync(join(out, `rank${ddp.rank}.json`), JSON.stringify({ rows, advantages }));
}
