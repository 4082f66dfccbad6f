// Strategies in one process: data sharding, the flat layout zero2 shards by, the errors when MPI is missing, and the
// ddp/zero2 code paths over a one-rank loopback communicator (which must reproduce naive exactly).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { BatchLoader } from '../src/data/batching.js';
import { createStrategy, naiveStrategy, type Strategy } from '../src/strategies/strategy.js';
import { shardItems, shardedLoader } from '../src/strategies/sharding.js';
import { flatLayout, flatten, partitionCounts, piecesIn, rangeOf, unflatten } from '../src/strategies/flat_shards.js';
import { MPI_ADDON_ENV, type Communicator } from '../src/strategies/mpi.js';
import { DdpStrategy } from '../src/strategies/ddp.js';
import { Zero2Strategy } from '../src/strategies/zero2.js';
import { fixtureDir } from './helpers/fixtures.js';
import { loadModel, makeOptimization, runSteps, weightsOf, type TrainOptions } from './strategies_worker.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** A world of one rank: every collective is the identity. */
function loopback(): Communicator {
  return {
    rank: 0, size: 1, timeoutS: 1,
    allreduce: () => {},
    reduceScatter: (send) => Float32Array.from(send),
    allgather: (send) => Float32Array.from(send),
    broadcast: () => {},
    barrier: () => {},
  };
}

describe('data sharding', () => {
  it('strides items over ranks and wraps around so every rank gets the same count', () => {
    const items = [0, 1, 2, 3, 4];
    expect(shardItems(items, 0, 2)).toEqual([0, 2, 4]);
    expect(shardItems(items, 1, 2)).toEqual([1, 3, 0]);
    expect(shardItems(items, 2, 3)).toEqual([2, 0]);
    expect(shardItems(items, 0, 1)).toEqual(items);
    expect(shardItems([], 1, 2)).toEqual([]);
    // Every item lands on some rank.
    const all = [0, 1, 2].flatMap((r) => shardItems(items, r, 3));
    expect(new Set(all)).toEqual(new Set(items));
  });

  it('N ranks of a sharded loader see exactly the batches of one loader with the N-times batch', () => {
    const items = Array.from({ length: 13 }, (_, i) => i);
    const collate = (xs: number[]) => xs;
    const one = new BatchLoader(items, { batchSize: 4, seed: 5, collate });
    const ranks = [0, 1].map((r) => shardedLoader(items, { batchSize: 2, seed: 5, collate }, r, 2));
    expect(ranks[0]!.batchesPerEpoch).toBe(one.batchesPerEpoch);
    for (let step = 0; step < 10; step++) {
      const whole = one.next().batch;
      const parts = ranks.map((l) => l.next().batch);
      expect(parts[0]!.length).toBe(parts[1]!.length);
      // Equal except where the epoch's last, short batch wraps around to fill the second rank.
      const union = new Set([...parts[0]!, ...parts[1]!]);
      expect(union).toEqual(new Set(whole));
    }
    expect(ranks[1]!.position).toEqual(one.position);
  });
});

describe('flat layout and zero2 partition', () => {
  const params = [['a', { shape: [3, 2] }], ['b', { shape: [5] }], ['c', { shape: [1] }]] as const;

  it('splits the flat vector evenly and cuts parameters into pieces that cover each element once', () => {
    const layout = flatLayout(params);
    expect(layout.total).toBe(12);
    for (const n of [1, 2, 3, 5]) {
      const counts = partitionCounts(layout.total, n);
      expect(counts.reduce((s, c) => s + c, 0)).toBe(12);
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
      const covered = new Map<string, number[]>();
      for (let r = 0; r < n; r++) {
        const [start, end] = rangeOf(counts, r);
        for (const p of piecesIn(layout, start, end)) {
          expect(p.shardOffset + p.length).toBeLessThanOrEqual(end - start);
          const cells = covered.get(p.name) ?? [];
          for (let i = 0; i < p.length; i++) cells.push(p.paramOffset + i);
          covered.set(p.name, cells);
        }
      }
      for (const slot of layout.slots) expect(covered.get(slot.name)!.sort((x, y) => x - y)).toEqual([...Array(slot.size).keys()]);
    }
    expect(piecesIn(layout, 4, 8)).toEqual([
      { name: 'a', paramOffset: 4, length: 2, shardOffset: 0 },
      { name: 'b', paramOffset: 0, length: 2, shardOffset: 2 },
    ]);
  });

  it('flattens in layout order, zero-fills missing tensors, and unflattens to the same shapes', () => {
    const layout = flatLayout(params);
    const a = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const c = tf.tensor1d([9]);
    const flat = flatten(layout, new Map<string, tf.Tensor>([['c', c], ['a', a]]));
    expect([...flat]).toEqual([1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 9]);
    const back = unflatten(layout, flat);
    expect(back.get('a')!.shape).toEqual([3, 2]);
    expect([...back.get('a')!.dataSync()]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => flatten(layout, new Map([['z', c]]))).toThrow(/'z' is not one of the 3 parameters/);
    tf.dispose([a, c, ...back.values()]);
  });
});

describe('createStrategy', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('rejects unknown names and keeps naive MPI-free', () => {
    expect(() => createStrategy('fsdp')).toThrow(/unknown strategy "fsdp" \(choose one of: naive, ddp, zero2\)/);
    const s = createStrategy('naive');
    expect([s.kind, s.rank, s.worldSize, s.isMain()]).toEqual(['naive', 0, 1, true]);
    expect(s.anyRank(true)).toBe(true);
    expect(s.reduceMetrics({ 'train/loss': 2 })).toEqual({ 'train/loss': 2 });
  });

  it('says what to install when the MPI addon is missing', () => {
    process.env[MPI_ADDON_ENV] = '/nonexistent/rlhf_mpi.node';
    for (const kind of ['ddp', 'zero2']) {
      expect(() => createStrategy(kind)).toThrow(
        new RegExp(`--strategy ${kind} needs the MPI addon.*apt-get install libopenmpi-dev openmpi-bin.*npm run build:mpi`),
      );
    }
  });

  it('says to launch with mpirun when the process was not started by it', () => {
    for (const k of ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'PMI_RANK', 'PMI_SIZE', 'PMIX_RANK', 'PMIX_SIZE']) delete process.env[k];
    let message = '';
    try {
      createStrategy('ddp');
    } catch (e) {
      message = (e as Error).message;
    }
    // Without the addon built, the install message comes first; with it, the launch message.
    expect(message).toMatch(/mpirun -np 2|apt-get install libopenmpi-dev/);
  });
});

describe('ddp and zero2 code paths on one rank reproduce naive', () => {
  const o: TrainOptions = {
    modelDir: fixtureDir('gpt2'), steps: 3, batchPerRank: 2, accumulationSteps: 2, seqLen: 8, lr: 2e-3, gradClip: 0.05, weightDecay: 0.1,
  };

  function train(strategy: Strategy) {
    const model = loadModel(o);
    const opt = makeOptimization(model, strategy, o);
    const { losses } = runSteps(model, opt, strategy, o);
    const state = opt.gatherStateDict();
    const result = { losses, weights: weightsOf(model), state, stateSize: opt.localStateSize(), opt, model };
    return result;
  }

  it('gives bit-identical weights, the same optimizer state, and a checkpointable full state', () => {
    const naive = train(naiveStrategy());
    const ddp = train(new DdpStrategy(loopback()));
    const zero2 = train(new Zero2Strategy(loopback()));
    expect(ddp.weights).toEqual(naive.weights);
    // zero2 computes the clipping norm in float64 over the flat gradient: equal to float32 rounding.
    for (const [name, w] of Object.entries(naive.weights)) {
      const z = zero2.weights[name]!;
      for (let i = 0; i < w.length; i++) expect(Math.abs(z[i]! - w[i]!)).toBeLessThan(1e-6);
    }
    expect(zero2.stateSize).toBe(naive.stateSize);
    expect([...zero2.state.tensors.keys()].sort()).toEqual([...naive.state.tensors.keys()].sort());
    for (const [k, t] of naive.state.tensors) expect(zero2.state.tensors.get(k)!.shape).toEqual(t.shape);
    expect(zero2.state.step).toBe(3);
    expect(zero2.state.paramSteps!['transformer.wte.weight']).toBe(3);

    // The full state loads back into a sharded optimizer (as after a resume) and gathers to the same values.
    zero2.opt.loadStateDict(naive.state, 3);
    const again = zero2.opt.gatherStateDict();
    for (const [k, t] of naive.state.tensors) expect(again.tensors.get(k)!.data).toEqual(t.data);
    expect(() => zero2.opt.loadStateDict({ step: 1, tensors: new Map([['exp_avg.nope', { data: new Float32Array(1), shape: [1] }]]) }, 1))
      .toThrow(/'exp_avg.nope' names no parameter/);
    for (const r of [naive, ddp, zero2]) {
      r.opt.dispose();
      r.model.dispose();
    }
  });

  it('holds no more tensors after each zero2 and ddp step than after the first', () => {
    for (const strategy of [new Zero2Strategy(loopback()), new DdpStrategy(loopback())]) {
      const one = { ...o, accumulationSteps: 1, steps: 1 };
      const model = loadModel(one);
      const opt = makeOptimization(model, strategy, one);
      const counts: number[] = [];
      for (let s = 0; s < 3; s++) {
        runSteps(model, opt, strategy, { ...one, startStep: s });
        counts.push(tf.memory().numTensors);
      }
      expect(new Set(counts).size).toBe(1);
      opt.dispose();
      model.dispose();
    }
  });

  it('refuses a main-rank-only stateDict under zero2, pointing at saveOnMain', async () => {
    const strategy = new Zero2Strategy(loopback());
    const model = loadModel(o);
    const opt = makeOptimization(model, strategy, o);
    runSteps(model, opt, strategy, { ...o, steps: 1 });
    expect(() => opt.stateDict()).toThrow(/strategy.saveOnMain/);
    const seen = await strategy.saveOnMain([opt], async () => opt.stateDict().tensors.size);
    expect(seen).toBeGreaterThan(0);
    // The gathered copy is dropped after the save.
    expect(() => opt.stateDict()).toThrow(/zero2/);
    opt.dispose();
    model.dispose();
  });
});
