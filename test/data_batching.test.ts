import { describe, expect, it } from 'vitest';
import { BatchLoader, IGNORE_INDEX, padBatch } from '../src/data/index.js';
import { groupedOrder } from '../src/data/batching.js';

const M = IGNORE_INDEX;

describe('padBatch', () => {
  const samples = [
    { inputIds: [5, 6, 7], labels: [M, 6, 7] },
    { inputIds: [8], labels: [8] },
  ];

  it('right padding for training: pad id, mask 0, labels -100', () => {
    expect(padBatch(samples, { padTokenId: 0 })).toEqual({
      inputIds: [[5, 6, 7], [8, 0, 0]],
      attentionMask: [[1, 1, 1], [1, 0, 0]],
      labels: [[M, 6, 7], [8, M, M]],
    });
  });

  it('left padding for prompts; samples without labels get -100; padToMultipleOf', () => {
    expect(padBatch([{ inputIds: [5, 6, 7] }, { inputIds: [8] }], { padTokenId: 9, side: 'left', padToMultipleOf: 4 })).toEqual({
      inputIds: [[9, 5, 6, 7], [9, 9, 9, 8]],
      attentionMask: [[0, 1, 1, 1], [0, 0, 0, 1]],
      labels: [[M, M, M, M], [M, M, M, M]],
    });
  });

  it('labels one longer than the inputs (a target past the last input) stay one longer, padded with -100', () => {
    expect(padBatch([{ inputIds: [5, 6], labels: [5, 6, 7] }, { inputIds: [8], labels: [8, 9] }], { padTokenId: 0 })).toEqual({
      inputIds: [[5, 6], [8, 0]],
      attentionMask: [[1, 1], [1, 0]],
      labels: [[5, 6, 7], [8, 9, M]],
    });
    // all samples alike: one aligned sample among extended ones is an error naming it
    expect(() => padBatch([{ inputIds: [5, 6], labels: [5, 6, 7] }, { inputIds: [8], labels: [8] }], { padTokenId: 0 }))
      .toThrow(/sample 1 has 1 inputIds and 1 labels, not 2 \(one past the inputs, as sample 0\)/);
  });

  it('rejects mismatched labels and empty batches', () => {
    expect(() => padBatch([{ inputIds: [1, 2], labels: [1] }], { padTokenId: 0 })).toThrow(/sample 0 has 2 inputIds and 1 labels, not 2/);
    expect(() => padBatch([], { padTokenId: 0 })).toThrow(/no samples/);
  });
});

describe('BatchLoader', () => {
  const items = Array.from({ length: 10 }, (_, i) => i);
  const make = (opts: Partial<{ batchSize: number; seed: number; dropLast: boolean; shuffle: boolean }> = {}) =>
    new BatchLoader(items, { batchSize: 3, seed: 1, collate: (xs: number[]) => xs, ...opts });

  it('each epoch visits every item once, in a new seeded order', () => {
    const loader = make();
    expect(loader.batchesPerEpoch).toBe(4);
    const e0 = [...loader.epochBatches()];
    const e1 = [...loader.epochBatches()];
    expect(e0.map((b) => b.length)).toEqual([3, 3, 3, 1]);
    expect(e0.flat().sort((a, b) => a - b)).toEqual(items);
    expect(e1.flat().sort((a, b) => a - b)).toEqual(items);
    expect(e1.flat()).not.toEqual(e0.flat());
    expect(e0.flat()).not.toEqual(items);
    expect(loader.position).toEqual({ epoch: 2, index: 0 });
    expect([...make().epochBatches()]).toEqual(e0); // same seed, same order
    expect([...make({ seed: 2 }).epochBatches()].flat()).not.toEqual(e0.flat());
  });

  it('resumes mid-epoch from a saved position with the same batches as an uninterrupted run', () => {
    const straight = make();
    const expected = Array.from({ length: 9 }, () => straight.next());
    const first = make();
    for (let i = 0; i < 5; i++) first.next();
    const saved = first.position;
    expect(saved).toEqual({ epoch: 1, index: 1 });
    const resumed = make();
    resumed.restore(saved);
    const rest = Array.from({ length: 4 }, () => resumed.next());
    expect(rest).toEqual(expected.slice(5));
    expect(rest[0]).toMatchObject({ epoch: 1, index: 1 });
    // epochBatches after restore gives only the rest of that epoch.
    const partial = make();
    partial.restore({ epoch: 0, index: 2 });
    expect([...partial.epochBatches()]).toEqual(expected.slice(2, 4).map((x) => x.batch));
  });

  it('groupOf keeps each group together in a seeded, per-epoch shuffle of the groups', () => {
    const items = Array.from({ length: 12 }, (_, i) => i);
    const group = (i: number) => String(i % 4); // groups {0,4,8} {1,5,9} {2,6,10} {3,7,11}
    const loader = new BatchLoader(items, { batchSize: 3, seed: 7, groupOf: group, collate: (xs) => xs });
    const epochs = [0, 1].map(() => [...loader.epochBatches()].flat());
    for (const order of epochs) {
      expect([...order].sort((a, b) => a - b)).toEqual(items);
      // every group is one run of consecutive positions
      for (let g = 0; g < 4; g++) {
        const at = order.map((x, k) => (x % 4 === g ? k : -1)).filter((k) => k >= 0);
        expect(at[2]! - at[0]!).toBe(2);
      }
    }
    expect(epochs[0]).not.toEqual(epochs[1]);
    expect(groupedOrder([5, 0, 1, 4], items, group, null)).toEqual([5, 1, 0, 4]); // no rng: first appearance
  });

  it('dropLast, no shuffle, and invalid settings', () => {
    const loader = make({ dropLast: true, shuffle: false });
    expect([...loader.epochBatches()]).toEqual([[0, 1, 2], [3, 4, 5], [6, 7, 8]]);
    expect(() => make({ batchSize: 11, dropLast: true })).toThrow(/no batches: 10 items with batchSize 11 and dropLast/);
    expect(() => make({ batchSize: 0 })).toThrow(/batchSize must be a positive integer/);
    expect(() => make().restore({ epoch: 0, index: 9 })).toThrow(/invalid loader position/);
  });
});
