/**
 * Gradient helpers every trainer shares: global norm, torch-style clipping, accumulation over micro-batches.
 *
 * Ownership rule: a helper that returns new tensors disposes the tensors they replace, so a training loop can write
 * `grads = clipByGlobalNorm(grads, 1).grads` without leaking. Tensors a helper does not replace are returned as is.
 */
import { tf, type Tensor } from '../engine/tf.js';

/** Tensors keyed by parameter name, as a Map or a plain object (what `tf.variableGrads` returns). */
export type NamedTensors = Map<string, Tensor> | Record<string, Tensor>;

/** The (name, tensor) pairs of either form, in insertion order. */
export function namedEntries(tensors: NamedTensors): [string, Tensor][] {
  return tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
}

/** sqrt(sum of squares of every element of every gradient), as torch's clip_grad_norm_ computes it (2-norm). */
export function globalNorm(grads: NamedTensors): number {
  const entries = namedEntries(grads);
  if (entries.length === 0) return 0;
  // One scalar read back to the CPU for all gradients: a read per tensor would stall the backend each time.
  const sumOfSquares = tf.tidy(() => tf.addN(entries.map(([, g]) => tf.sum(tf.square(g)))));
  const value = sumOfSquares.dataSync()[0]!;
  sumOfSquares.dispose();
  return Math.sqrt(value);
}

/** What `clipByGlobalNorm` returns. */
export interface ClippedGrads {
  /** The gradients after clipping (the inputs themselves when no clipping was needed). */
  grads: Map<string, Tensor>;
  /** The global norm before clipping, which is what trainers log as `train/grad_norm`. */
  norm: number;
  /** Whether the gradients were scaled down. */
  clipped: boolean;
}

/**
 * torch.nn.utils.clip_grad_norm_: coef = maxNorm / (norm + 1e-6); when coef < 1 every gradient is multiplied by it.
 * Scaled gradients replace (and dispose) the inputs. A non-finite norm leaves the gradients untouched (torch would
 * scale them by NaN); the caller should check `Number.isFinite(norm)` and skip the optimizer step.
 */
export function clipByGlobalNorm(grads: NamedTensors, maxNorm: number): ClippedGrads {
  const entries = namedEntries(grads);
  const norm = globalNorm(grads);
  const coef = clipCoefficient(norm, maxNorm);
  if (coef === 1) return { grads: new Map(entries), norm, clipped: false };
  const scaled = new Map<string, Tensor>();
  for (const [name, g] of entries) {
    scaled.set(name, tf.mul(g, coef));
    g.dispose();
  }
  return { grads: scaled, norm, clipped: true };
}

/**
 * The factor clip_grad_norm_ scales gradients of global norm `norm` by: maxNorm / (norm + 1e-6) when that is below
 * 1, else 1 (and 1 for a non-finite norm, which the caller must check: torch would scale by NaN).
 */
export function clipCoefficient(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: maxNorm must be > 0, got ${maxNorm}`);
  const coef = maxNorm / (norm + 1e-6);
  return !Number.isFinite(norm) || coef >= 1 ? 1 : coef;
}

/**
 * Adds `grads` into the running `sum` (gradient accumulation). Consumes both: the old sum tensors and the incoming
 * gradients are disposed (or, for names new to the sum, adopted as is). Pass `undefined` as the first sum.
 */
export function accumulate(sum: Map<string, Tensor> | undefined, grads: NamedTensors): Map<string, Tensor> {
  const next = new Map(sum ?? []);
  for (const [name, g] of namedEntries(grads)) {
    const previous = next.get(name);
    if (previous === undefined) {
      next.set(name, g);
      continue;
    }
    if (!tf.util.arraysEqual(previous.shape, g.shape)) {
      throw new Error(`accumulate: gradient '${name}' has shape [${g.shape}] but the sum has [${previous.shape}]`);
    }
    next.set(name, tf.add(previous, g));
    previous.dispose();
    g.dispose();
  }
  return next;
}

/** Multiplies every gradient by `factor` (e.g. 1 / accumulationSteps), disposing the inputs (returned as is for 1). */
export function scaleGrads(grads: NamedTensors, factor: number): Map<string, Tensor> {
  if (factor === 1) return new Map(namedEntries(grads)); // nothing to scale: the inputs themselves
  const scaled = new Map<string, Tensor>();
  for (const [name, g] of namedEntries(grads)) {
    scaled.set(name, tf.mul(g, factor));
    g.dispose();
  }
  return scaled;
}

/** Disposes every tensor of a gradient map (after the optimizer step). */
export function disposeGrads(grads: NamedTensors | undefined): void {
  if (grads === undefined) return;
  for (const [, g] of namedEntries(grads)) g.dispose();
}
