/**
 * One optimizer's whole update path, shared by every stage: gradients of a micro-batch loss, accumulation over
 * `accumulationSteps` micro-batches, reduction across ranks, global-norm clipping, the LR schedule and AdamW.
 *
 * Placement comes from the strategy: naive and ddp keep a full AdamW on every rank (ddp averages the gradients
 * first, through `strategy.reduceGradients`); zero2 hands the whole step to the strategy's `ShardedUpdate`, which
 * reduce-scatters the gradients, keeps only this rank's slice of the AdamW moments and all-gathers the parameters.
 */
import { tf, type Tensor, type Variable } from '../engine/tf.js';
import type { Strategy } from '../strategies/strategy.js';
import { AdamW, noDecayForBiasAndNorm, type AdamWConfig, type AdamWStateDict } from './adamw.js';
import { accumulate, clipCoefficient, disposeGrads, globalNorm, scaleGrads } from './grad_utils.js';
import { scheduledLr, type LrSchedulerName, type WarmupStart } from './schedule.js';

export interface OptimizationConfig {
  lr: number;
  weightDecay: number;
  betas?: [number, number];
  eps?: number;
  /** Max global gradient norm; 0 or less turns clipping off. */
  gradClip: number;
  accumulationSteps: number;
  warmupSteps: number;
  /** How the warm-up counts (src/trainer/schedule.ts WARMUP_STARTS; default 'zero'). */
  warmupStart?: WarmupStart;
  /** Optimizer steps in the whole run (for the decaying schedules). */
  totalSteps: number;
  /** `--lr_scheduler` (src/trainer/schedule.ts). */
  schedule: LrSchedulerName;
  /** Floor of cosine_with_min_lr. */
  minLr?: number;
  /** Step where the decay ends, when before totalSteps (`--decay_steps`). */
  decaySteps?: number;
}

export interface StepResult {
  lr: number;
  gradNorm: number;
  /** True when the step was skipped for a non-finite gradient norm. */
  skipped: boolean;
}

export interface BackwardResult {
  loss: number;
  /** Auxiliary scalars the loss function returned, as numbers. */
  aux: Record<string, number>;
}

/**
 * An optimizer step whose state is sharded across ranks (zero2). It owns reduction, clipping and AdamW; its calls
 * are collective: every rank makes them in the same order.
 */
export interface ShardedUpdate {
  /** This rank's AdamW, over its pieces of the parameters only. */
  readonly optimizer: AdamW;
  /** Reduce the summed local gradients across ranks, clip (gradClip <= 0: off) and update. Consumes `grads`. */
  step(grads: Map<string, Tensor>, lr: number, gradClip: number): { gradNorm: number; skipped: boolean };
  /** The full state, as a one-process AdamW over every parameter would hold it (collective). */
  gatherStateDict(): AdamWStateDict;
  /** Takes this rank's part of a full state (any world size wrote it). */
  loadStateDict(full: AdamWStateDict): void;
  dispose(): void;
}

export class Optimization {
  /** The AdamW this rank runs: over every parameter, or (zero2) over this rank's pieces of them. */
  readonly optimizer: AdamW;
  readonly config: OptimizationConfig;
  private readonly params: [string, Variable][];
  private readonly byVarName: Map<string, string>;
  private readonly sharded: ShardedUpdate | null;
  private sum: Map<string, Tensor> | undefined;
  private micro = 0;
  /** A full state gathered by `gatherStateDict`, valid until the next step. */
  private snapshot: AdamWStateDict | undefined;
  /** Optimizer steps taken. */
  globalStep = 0;

  constructor(params: [string, Variable][], config: OptimizationConfig, private readonly strategy: Strategy) {
    if (!params.length) throw new Error('nothing to train: no trainable parameters');
    this.params = params;
    this.config = config;
    this.byVarName = new Map(params.map(([n, v]) => [v.name, n]));
    const adamw: AdamWConfig = {
      lr: config.lr, betas: config.betas ?? [0.9, 0.999], eps: config.eps ?? 1e-8, weightDecay: config.weightDecay,
      noDecay: noDecayForBiasAndNorm,
    };
    // Every rank starts from rank 0's weights (a no-op in one process), so replicas cannot drift from the start.
    strategy.broadcastParameters(params.map(([, v]) => v));
    this.sharded = strategy.createShardedUpdate(params, adamw);
    this.optimizer = this.sharded?.optimizer ?? new AdamW(params, adamw);
  }

  /** The trainable variables this optimizer updates (for checks such as the non-finite guard's). */
  get variables(): Variable[] {
    return this.params.map(([, v]) => v);
  }

  lrAt(step: number): number {
    const c = this.config;
    // Callers written before the named schedules: 'cosine' with a floor, and 'constant' with a warm-up, keep meaning
    // what they meant then (scheduleFor gives the flag names their transformers meaning).
    const name = c.schedule === 'cosine' && c.minLr ? 'cosine_with_min_lr' : c.schedule === 'constant' && c.warmupSteps > 0 ? 'constant_with_warmup' : c.schedule;
    return scheduledLr(step, {
      name, maxLr: c.lr, warmupSteps: c.warmupSteps, warmupStart: c.warmupStart,
      totalSteps: c.totalSteps, decaySteps: c.decaySteps, minLr: c.minLr,
    });
  }

  /**
   * Gradients of `lossFn` for this optimizer's parameters, added to the accumulator. `lossFn` may report auxiliary
   * scalars through `aux` (kept out of the tape's disposal).
   */
  backward(lossFn: (aux: Record<string, Tensor>) => tf.Scalar): BackwardResult {
    const auxT: Record<string, Tensor> = {};
    const { value, grads } = tf.variableGrads(() => {
      const loss = lossFn(auxT);
      for (const t of Object.values(auxT)) tf.keep(t);
      return loss;
    }, this.params.map(([, v]) => v));
    const named = new Map<string, Tensor>();
    for (const [varName, g] of Object.entries(grads)) named.set(this.byVarName.get(varName)!, g);
    this.sum = accumulate(this.sum, scaleGrads(named, 1 / this.config.accumulationSteps));
    this.micro += 1;
    const loss = value.dataSync()[0]!;
    value.dispose();
    const aux: Record<string, number> = {};
    for (const [k, t] of Object.entries(auxT)) {
      aux[k] = t.dataSync()[0]!;
      t.dispose();
    }
    return { loss, aux };
  }

  /** Whether enough micro-batches have been accumulated for an optimizer step. */
  ready(): boolean {
    return this.micro >= this.config.accumulationSteps;
  }

  /** Reduce across ranks, clip, and apply AdamW at the scheduled LR. */
  step(): StepResult {
    if (!this.sum) throw new Error('Optimization.step() before any backward()');
    const local = this.strategy.worldSize > 1 ? this.completeGrads(this.sum) : this.sum;
    this.sum = undefined;
    this.micro = 0;
    this.snapshot = undefined;
    const lr = this.lrAt(this.globalStep);
    if (this.sharded) {
      const { gradNorm, skipped } = this.sharded.step(local, lr, this.config.gradClip);
      this.globalStep += 1;
      return { lr, gradNorm, skipped };
    }
    const grads = this.strategy.reduceGradients(local);
    const gradNorm = globalNorm(grads);
    const skipped = !Number.isFinite(gradNorm);
    // Clipping (torch's clip_grad_norm_) as a factor AdamW folds into its moment updates: no scaled gradient copies.
    if (!skipped) this.optimizer.step(grads, lr, this.config.gradClip > 0 ? clipCoefficient(gradNorm, this.config.gradClip) : 1);
    disposeGrads(grads);
    this.globalStep += 1;
    return { lr, gradNorm, skipped };
  }

  /**
   * Every parameter's gradient, in parameter order, zeros for those this rank's batch did not reach: ranks must
   * exchange the same tensors in the same order (torch's DDP also steps unused parameters with a zero gradient).
   */
  private completeGrads(sum: Map<string, Tensor>): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, v] of this.params) out.set(name, sum.get(name) ?? tf.zeros(v.shape));
    return out;
  }

  /**
   * The full optimizer state for a checkpoint. Under zero2 the state is spread over the ranks: call
   * `gatherStateDict()` on every rank first (`strategy.saveOnMain` does), after which this returns the gathered copy.
   */
  stateDict(): AdamWStateDict {
    if (this.snapshot) return this.snapshot;
    if (this.sharded) {
      throw new Error(
        'Optimization.stateDict(): under --strategy zero2 each rank holds a slice of the optimizer state; save through ' +
          'strategy.saveOnMain([optimization], write) on every rank, which gathers it first',
      );
    }
    return this.optimizer.stateDict();
  }

  /** The full state, gathered from every rank under zero2 (collective: call on every rank); kept for `stateDict()`. */
  gatherStateDict(): AdamWStateDict {
    this.snapshot = this.sharded ? this.sharded.gatherStateDict() : this.optimizer.stateDict();
    return this.snapshot;
  }

  /** Drops the copy `gatherStateDict` kept (it holds the full state in host memory). */
  releaseStateDict(): void {
    this.snapshot = undefined;
  }

  /** Loads a full state (from any world size); under zero2 each rank keeps its slice. */
  loadStateDict(s: AdamWStateDict, globalStep: number): void {
    if (this.sharded) this.sharded.loadStateDict(s);
    else this.optimizer.loadStateDict(s);
    this.snapshot = undefined;
    this.globalStep = globalStep;
  }

  /** Elements of AdamW state (exp_avg + exp_avg_sq) this rank holds: under zero2 about 1/worldSize of the total. */
  localStateSize(): number {
    let n = 0;
    for (const t of this.optimizer.stateDict().tensors.values()) n += t.data.length;
    return n;
  }

  dispose(): void {
    if (this.sum) disposeGrads(this.sum);
    this.sharded?.dispose();
    this.optimizer.dispose();
    this.snapshot = undefined;
  }
}
