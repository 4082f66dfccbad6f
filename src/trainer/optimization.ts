/**
 * One optimizer's whole update path, shared by every stage: gradients of a micro-batch loss, accumulation over
 * `accumulationSteps` micro-batches, reduction across ranks, global-norm clipping, the LR schedule and AdamW.
 */
import { tf, type Tensor, type Variable } from '../engine/tf.js';
import type { Strategy } from '../strategies/strategy.js';
import { AdamW, noDecayForBiasAndNorm, type AdamWStateDict } from './adamw.js';
import { accumulate, clipByGlobalNorm, disposeGrads, globalNorm, scaleGrads } from './grad_utils.js';
import { constantWithWarmup, cosineWithWarmup } from './schedule.js';

export interface OptimizationConfig {
  lr: number;
  weightDecay: number;
  betas?: [number, number];
  eps?: number;
  /** Max global gradient norm; 0 or less turns clipping off. */
  gradClip: number;
  accumulationSteps: number;
  warmupSteps: number;
  /** Optimizer steps in the whole run (for the cosine schedule). */
  totalSteps: number;
  schedule: 'cosine' | 'constant';
  minLr?: number;
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

export class Optimization {
  readonly optimizer: AdamW;
  readonly config: OptimizationConfig;
  private readonly params: [string, Variable][];
  private readonly byVarName: Map<string, string>;
  private sum: Map<string, Tensor> | undefined;
  private micro = 0;
  /** Optimizer steps taken. */
  globalStep = 0;

  constructor(params: [string, Variable][], config: OptimizationConfig, private readonly strategy: Strategy) {
    if (!params.length) throw new Error('nothing to train: no trainable parameters');
    this.params = params;
    this.config = config;
    this.byVarName = new Map(params.map(([n, v]) => [v.name, n]));
    this.optimizer = new AdamW(params, {
      lr: config.lr, betas: config.betas ?? [0.9, 0.999], eps: config.eps ?? 1e-8, weightDecay: config.weightDecay,
      noDecay: noDecayForBiasAndNorm,
    });
  }

  lrAt(step: number): number {
    const c = this.config;
    return c.schedule === 'cosine'
      ? cosineWithWarmup(step, { totalSteps: c.totalSteps, warmupSteps: c.warmupSteps, maxLr: c.lr, minLr: c.minLr ?? 0 })
      : constantWithWarmup(step, { warmupSteps: c.warmupSteps, maxLr: c.lr });
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
    let grads = this.strategy.reduceGradients(this.sum);
    this.sum = undefined;
    this.micro = 0;
    const lr = this.lrAt(this.globalStep);
    let gradNorm: number;
    if (this.config.gradClip > 0) {
      const c = clipByGlobalNorm(grads, this.config.gradClip);
      grads = c.grads;
      gradNorm = c.norm;
    } else {
      gradNorm = globalNorm(grads);
    }
    const skipped = !Number.isFinite(gradNorm);
    if (!skipped) this.optimizer.step(grads, lr);
    disposeGrads(grads);
    this.globalStep += 1;
    return { lr, gradNorm, skipped };
  }

  stateDict(): AdamWStateDict {
    return this.optimizer.stateDict();
  }

  loadStateDict(s: AdamWStateDict, globalStep: number): void {
    this.optimizer.loadStateDict(s);
    this.globalStep = globalStep;
  }

  dispose(): void {
    if (this.sum) disposeGrads(this.sum);
    this.optimizer.dispose();
  }
}
