/** Seeded train/validation split. */
import { Rng } from '../engine/rng.js';

/**
 * `valRatio` of the items (rounded, at least one and never all when 0 < ratio and there are 2+ items) go to `val`,
 * chosen by a seeded permutation; both parts keep the items' original order.
 */
export function splitTrainVal<T>(items: readonly T[], valRatio: number, seed: number): { train: T[]; val: T[] } {
  if (!(valRatio >= 0 && valRatio < 1)) throw new Error(`valRatio must be in [0, 1), got ${valRatio}`);
  const n = items.length;
  let nVal = Math.round(n * valRatio);
  if (valRatio > 0 && n >= 2) nVal = Math.min(Math.max(nVal, 1), n - 1);
  const valIndices = new Set(new Rng(seed).permutation(n).slice(0, nVal));
  const train: T[] = [];
  const val: T[] = [];
  items.forEach((item, i) => (valIndices.has(i) ? val : train).push(item));
  return { train, val };
}
