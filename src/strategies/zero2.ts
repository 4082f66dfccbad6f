/**
 * `zero2` (ZeRO stage 2 as DeepSpeed/ColossalAI name it): as ddp, but the optimizer is sharded.
 *
 * Sharding is by flat slices: the trainable parameters laid end to end (flat_shards.ts) are cut into one contiguous
 * range per rank of equal size (±1 element). Rank r owns the pieces of the parameters inside its range. Per step:
 *   1. reduce-scatter the flattened local gradients: rank r receives only the sum of its range, divided by N;
 *   2. global gradient norm = sqrt(all-reduce of the per-rank sums of squares); clip the range by it;
 *   3. AdamW on the range only: the moments (exp_avg, exp_avg_sq) exist for the rank's pieces only, so optimizer
 *      memory per rank is 1/N of ddp's (plus a copy of its 1/N of the parameters that AdamW updates in place);
 *   4. all-gather the updated ranges into every rank's full parameters.
 * The micro-batch gradients are still computed and accumulated in full on every rank (tfjs computes all gradients
 * of a loss at once); only from the reduce-scatter on does a rank hold just its slice.
 *
 * Checkpoints hold the full state, gathered (`gatherStateDict`), keyed exactly like a one-process AdamW's, so a
 * checkpoint moves between naive, ddp and zero2 at any world size; loading takes each rank's slice of it.
 */
import { tf, type Tensor, type Variable } from '../engine/tf.js';
import { AdamW, type AdamWConfig, type AdamWStateDict, type HostTensor } from '../trainer/adamw.js';
import type { ShardedUpdate } from '../trainer/optimization.js';
import { DdpStrategy, averageInPlace } from './ddp.js';
import { flatLayout, flatten, partitionCounts, piecesIn, rangeOf, type FlatLayout, type Piece } from './flat_shards.js';
import type { Communicator } from './mpi.js';

export class Zero2Strategy extends DdpStrategy {
  override readonly kind = 'zero2' as const;

  override createShardedUpdate(params: [string, Variable][], config: AdamWConfig): ShardedUpdate {
    return new ZeroShardedUpdate(this.comm, params, config);
  }
}

let instances = 0;

/** The sharded AdamW step of one parameter list (one per Optimization). */
export class ZeroShardedUpdate implements ShardedUpdate {
  readonly optimizer: AdamW;
  readonly layout: FlatLayout;
  /** Elements owned by each rank. */
  readonly counts: number[];
  /** This rank's pieces of the parameters, in flat order. */
  readonly pieces: Piece[];
  private readonly params: Map<string, Variable>;
  /** This rank's slices of the parameters, which AdamW updates; refreshed from the model at every step. */
  private readonly pieceVars: Map<string, Variable>;

  constructor(
    private readonly comm: Communicator,
    params: [string, Variable][],
    config: AdamWConfig,
  ) {
    this.params = new Map(params);
    this.layout = flatLayout(params);
    this.counts = partitionCounts(this.layout.total, comm.size);
    const [start, end] = rangeOf(this.counts, comm.rank);
    this.pieces = piecesIn(this.layout, start, end);
    const id = instances++;
    this.pieceVars = new Map(
      this.pieces.map((p) => [p.name, tf.variable(this.sliceOfParam(p), true, `zero2.${id}.rank${comm.rank}.${p.name}`)]),
    );
    this.optimizer = new AdamW(this.pieceVars, config);
  }

  private sliceOfParam(p: Piece): Tensor {
    return tf.tidy(() => tf.slice(tf.reshape(this.params.get(p.name)!, [-1]), [p.paramOffset], [p.length]));
  }

  step(grads: Map<string, Tensor>, lr: number, gradClip: number): { gradNorm: number; skipped: boolean } {
    // 1. This rank's range of the averaged gradient.
    const flat = flatten(this.layout, grads);
    for (const g of grads.values()) g.dispose();
    const shard = this.comm.reduceScatter(flat, this.counts);
    averageInPlace(shard, this.comm.size);

    // 2. Global norm from every rank's sum of squares; the same value (and so the same decision) on every rank.
    let local = 0;
    for (let i = 0; i < shard.length; i++) local += shard[i]! * shard[i]!;
    const sum = new Float64Array([local]);
    this.comm.allreduce(sum, 'sum');
    const gradNorm = Math.sqrt(sum[0]!);
    if (!Number.isFinite(gradNorm)) return { gradNorm, skipped: true };
    if (gradClip > 0) {
      const coef = gradClip / (gradNorm + 1e-6); // torch's clip_grad_norm_
      if (coef < 1) for (let i = 0; i < shard.length; i++) shard[i]! *= coef;
    }

    // 3. AdamW over this rank's pieces, starting from the model's current values.
    const pieceGrads = new Map<string, Tensor>();
    for (const p of this.pieces) {
      const current = this.sliceOfParam(p);
      this.pieceVars.get(p.name)!.assign(current);
      current.dispose();
      pieceGrads.set(p.name, tf.tensor1d(shard.subarray(p.shardOffset, p.shardOffset + p.length), 'float32'));
    }
    this.optimizer.step(pieceGrads, lr);
    for (const g of pieceGrads.values()) g.dispose();

    // 4. Every rank's updated range into every rank's parameters.
    const mine = new Float32Array(this.counts[this.comm.rank]!);
    for (const p of this.pieces) mine.set(this.pieceVars.get(p.name)!.dataSync() as Float32Array, p.shardOffset);
    const full = this.comm.allgather(mine, this.counts);
    for (const slot of this.layout.slots) {
      const value = tf.tensor(full.subarray(slot.offset, slot.offset + slot.size), slot.shape, 'float32');
      this.params.get(slot.name)!.assign(value);
      value.dispose();
    }
    return { gradNorm, skipped: false };
  }

  gatherStateDict(): AdamWStateDict {
    const local = this.optimizer.stateDict();
    // A parameter's step count (0: no state yet) is the largest any of its pieces has.
    const steps = new Float64Array(this.layout.slots.length);
    this.layout.slots.forEach((slot, i) => {
      if (local.tensors.has(`exp_avg.${slot.name}`)) steps[i] = local.paramSteps?.[slot.name] ?? local.step;
    });
    this.comm.allreduce(steps, 'max');
    const gatherMoment = (kind: 'exp_avg' | 'exp_avg_sq'): Float32Array => {
      const mine = new Float32Array(this.counts[this.comm.rank]!);
      for (const p of this.pieces) {
        const t = local.tensors.get(`${kind}.${p.name}`);
        if (t) mine.set(t.data, p.shardOffset);
      }
      return this.comm.allgather(mine, this.counts);
    };
    const m = gatherMoment('exp_avg');
    const v = gatherMoment('exp_avg_sq');
    const tensors = new Map<string, HostTensor>();
    const paramSteps: Record<string, number> = {};
    this.layout.slots.forEach((slot, i) => {
      if (steps[i]! <= 0) return;
      const range = [slot.offset, slot.offset + slot.size] as const;
      tensors.set(`exp_avg.${slot.name}`, { data: m.slice(...range), shape: [...slot.shape] });
      tensors.set(`exp_avg_sq.${slot.name}`, { data: v.slice(...range), shape: [...slot.shape] });
      paramSteps[slot.name] = steps[i]!;
    });
    return { step: this.optimizer.stepCount, tensors, paramSteps };
  }

  loadStateDict(full: AdamWStateDict): void {
    for (const [key, t] of full.tensors) {
      const name = key.replace(/^exp_avg(_sq)?\./, '');
      const slot = this.layout.byName.get(name);
      if (name === key || !slot) throw new Error(`zero2 loadStateDict: '${key}' names no parameter of this optimizer`);
      if (!tf.util.arraysEqual(t.shape, slot.shape) || t.data.length !== slot.size) {
        throw new Error(`zero2 loadStateDict: '${key}' has shape [${t.shape}], the parameter has [${slot.shape}]`);
      }
    }
    const tensors = new Map<string, HostTensor>();
    const paramSteps: Record<string, number> = {};
    for (const p of this.pieces) {
      for (const kind of ['exp_avg', 'exp_avg_sq']) {
        const t = full.tensors.get(`${kind}.${p.name}`);
        if (t) tensors.set(`${kind}.${p.name}`, { data: t.data.slice(p.paramOffset, p.paramOffset + p.length), shape: [p.length] });
      }
      if (tensors.has(`exp_avg.${p.name}`)) paramSteps[p.name] = full.paramSteps?.[p.name] ?? full.step;
    }
    this.optimizer.loadStateDict({ step: full.step, tensors, paramSteps });
  }

  dispose(): void {
    this.optimizer.dispose();
    for (const v of this.pieceVars.values()) v.dispose();
    this.pieceVars.clear();
  }
}
