/**
 * Stops a run whose numbers have gone bad, before it saves anything more. Every trainer calls `check` once per
 * optimizer step (PPO: per episode), before its checkpoints, with the step's metrics and its trainable weights:
 *
 *   - a metric that is NaN or ±Inf (loss, gradient norm, KL, ...)          → stop (or skip, see below)
 *   - a trainable weight that is NaN or ±Inf after the update              → stop, never skippable
 *   - the loss explodes: above k × max(median of the last 32 step losses, 1)  → stop (k = --loss_spike_factor,
 *     default 10; 0 turns the rule off). The floor of 1 keeps a run whose loss has fallen near 0 from being stopped
 *     by an ordinary hard batch; a diverging run (e.g. --lr 1e10) jumps by orders of magnitude and is caught at once.
 *
 * Stopping throws `NonFiniteError`: the trainer's loop ends there, so neither that step's checkpoint nor the final
 * model in save_path is written; the checkpoints already on disk are left as they are. With
 * `--skip_nonfinite_steps N`, a step with a non-finite metric whose weights are still finite (the optimizer skips an
 * update with a non-finite gradient) is counted and training goes on, up to N such steps in this process.
 */
import { tf } from '../engine/tf.js';

/** The guard's settings, as every stage config carries them (flags --skip_nonfinite_steps, --loss_spike_factor). */
export interface NonFiniteOptions {
  /** Steps with a non-finite loss or gradient that may be skipped before the run stops (default 0: stop at once). */
  skipNonfiniteSteps?: number;
  /** Stop when the loss exceeds this many times max(running median, 1) (default 10; 0: off). */
  lossSpikeFactor?: number;
}

export const NONFINITE_DEFAULTS = { skipNonfiniteSteps: 0, lossSpikeFactor: 10 } as const;
/** Step losses the running median is taken over. */
export const LOSS_SPIKE_WINDOW = 32;
/** The median is floored at this value (nats) before the factor applies. */
export const LOSS_SPIKE_FLOOR = 1;

/** The run stopped on a bad number; `step` and `metric` name it. */
export class NonFiniteError extends Error {
  constructor(message: string, readonly step: number, readonly metric: string, readonly value: number) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/** What the guard says of one step. */
export type GuardVerdict = 'ok' | 'skipped';

export interface GuardContext {
  /** Where the final model would go (named in the message: it is not written). */
  savePath: string;
  /** What a step is called in messages (PPO counts episodes). */
  unit?: string;
  log?: (m: string) => void;
}

/** True when every element of every tensor is finite (a sum of absolute values propagates NaN and Inf). */
export function allFinite(tensors: readonly tf.Tensor[]): boolean {
  if (!tensors.length) return true;
  const total = tf.tidy(() => tf.addN(tensors.map((t) => tf.sum(tf.abs(t)))).dataSync()[0]!);
  return Number.isFinite(total);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class NonFiniteGuard {
  /** Steps skipped so far under --skip_nonfinite_steps. */
  skipped = 0;
  private readonly skipBudget: number;
  private readonly spikeFactor: number;
  private readonly losses: number[] = [];
  private lastCheckpoint: { step: number; dir: string } | null = null;
  private readonly unit: string;
  private readonly log: (m: string) => void;

  constructor(options: NonFiniteOptions, private readonly ctx: GuardContext) {
    this.skipBudget = options.skipNonfiniteSteps ?? NONFINITE_DEFAULTS.skipNonfiniteSteps;
    this.spikeFactor = options.lossSpikeFactor ?? NONFINITE_DEFAULTS.lossSpikeFactor;
    if (!Number.isInteger(this.skipBudget) || this.skipBudget < 0) throw new Error(`--skip_nonfinite_steps must be an integer >= 0, got ${this.skipBudget}`);
    if (!Number.isFinite(this.spikeFactor) || (this.spikeFactor !== 0 && this.spikeFactor <= 1)) {
      throw new Error(`--loss_spike_factor must be 0 (off) or a number > 1, got ${this.spikeFactor}`);
    }
    this.unit = ctx.unit ?? 'step';
    this.log = ctx.log ?? ((m) => process.stderr.write(m + '\n'));
  }

  /** Records a checkpoint this run wrote (or resumed from), so a stop can name the last one. */
  checkpointSaved(step: number, dir: string): void {
    this.lastCheckpoint = { step, dir };
  }

  /**
   * Checks one step after its update: `metrics` must all be finite, `weights` (the trainable variables) too, and
   * `metrics[lossKey]` must not explode. Throws NonFiniteError to stop; 'skipped' when the step is let go under
   * --skip_nonfinite_steps (its loss is then kept out of the running median).
   */
  check(step: number, metrics: Record<string, number>, weights: readonly tf.Tensor[], lossKey?: string): GuardVerdict {
    if (!allFinite(weights)) {
      this.stop(step, 'trainable weights', NaN, 'a weight is NaN or infinite after the update (an optimizer step cannot be undone, so this is never skipped)');
    }
    const bad = Object.entries(metrics).find(([, v]) => !Number.isFinite(v));
    if (bad) {
      const [metric, value] = bad;
      if (this.skipped < this.skipBudget) {
        this.skipped += 1;
        this.log(`${this.unit} ${step}: ${metric} is ${value}; skipped (${this.skipped} of --skip_nonfinite_steps ${this.skipBudget}), the weights are still finite`);
        return 'skipped';
      }
      const budget = this.skipBudget > 0 ? `, and the ${this.skipBudget} step(s) --skip_nonfinite_steps allows are used up` : '';
      this.stop(step, metric, value, `not finite${budget}`);
    }
    if (lossKey !== undefined && this.spikeFactor > 0) {
      const loss = metrics[lossKey]!;
      if (this.losses.length > 0) {
        const m = median(this.losses);
        const limit = this.spikeFactor * Math.max(m, LOSS_SPIKE_FLOOR);
        if (loss > limit) {
          this.stop(step, lossKey, loss, `the loss exploded: above ${this.spikeFactor} × max(median ${m.toPrecision(4)} of the last ${this.losses.length}, ${LOSS_SPIKE_FLOOR}) = ${limit.toPrecision(4)} (--loss_spike_factor; 0 turns this off)`);
        }
      }
      this.losses.push(loss);
      if (this.losses.length > LOSS_SPIKE_WINDOW) this.losses.shift();
    }
    return 'ok';
  }

  private stop(step: number, metric: string, value: number, why: string): never {
    const last = this.lastCheckpoint;
    let where = 'no checkpoint was written by this run';
    if (last) {
      where = `the last checkpoint is ${last.dir} (${this.unit} ${last.step})`;
      if (last.step === step - 1 && metric !== 'trainable weights') where += ': its weights produced this value, so an earlier checkpoint may be the safer start';
    }
    throw new NonFiniteError(
      `${this.unit} ${step}: ${metric} is ${value} (${why}). Stopped without saving: ${this.ctx.savePath} was not written and ` +
        `${where}. Lower --lr (or --grad_clip), then resume from a good checkpoint with --resume; ` +
        `--skip_nonfinite_steps N lets up to N isolated bad steps pass.`,
      step, metric, value,
    );
  }
}
