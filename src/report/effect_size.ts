/** Paired comparison of two score lists over the same prompts: mean difference, its 95% interval, Cohen's d_z, wins. */

export interface PairedEffect {
  n: number;
  meanA: number;
  meanB: number;
  /** mean(b − a) */
  meanDiff: number;
  /** Normal-approximation 95% interval of meanDiff. */
  ci95: [number, number];
  /** Cohen's d_z: mean(b − a) / sd(b − a); 0 when every difference is equal to the mean. */
  effectSize: number;
  /** Prompts where b scored higher, equal, lower than a. */
  wins: number;
  ties: number;
  losses: number;
}

const mean = (xs: readonly number[]): number => xs.reduce((s, v) => s + v, 0) / xs.length;

/** Sample standard deviation (n − 1); 0 for fewer than two values. */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, v) => s + (v - m) ** 2, 0) / (xs.length - 1));
}

export function pairedEffect(a: readonly number[], b: readonly number[]): PairedEffect {
  if (a.length !== b.length || a.length === 0) throw new Error(`pairedEffect: need two equally long, non-empty score lists (got ${a.length} and ${b.length})`);
  const d = a.map((v, i) => b[i]! - v);
  const md = mean(d);
  const sd = sampleStd(d);
  const half = (1.96 * sd) / Math.sqrt(d.length);
  return {
    n: d.length, meanA: mean(a), meanB: mean(b), meanDiff: md, ci95: [md - half, md + half],
    effectSize: sd > 0 ? md / sd : 0,
    wins: d.filter((v) => v > 0).length, ties: d.filter((v) => v === 0).length, losses: d.filter((v) => v < 0).length,
  };
}
