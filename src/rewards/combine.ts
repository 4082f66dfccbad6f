/**
 * Many reward sources, one reward per completion: r = Σ_f w_f·r_f with `null` entries skipped (TRL's nansum), and
 * per-source statistics under TRL's names (`rewards/<fn>/mean`, `rewards/<fn>/std`, NaN-aware).
 */
import { isBuiltinReward, builtinReward, type BuiltinOptions } from './builtins.js';
import { loadUserRewards, looksLikeModulePath } from './user_module.js';
import { RewardModelScorer } from './reward_model.js';
import { answerMaskRows } from '../models/value_model.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import type { RewardBatch, RewardSource } from './types.js';
import type { FrozenDtype } from '../models/ops/frozen_dtypes.js';

export interface RewardSpec extends BuiltinOptions {
  /** Built-in names and module paths (comma-separated entries allowed). */
  rewardFuncs: string[];
  /** Reward model directories. */
  rmPaths: string[];
  /** One weight per source, in order (functions, then reward models); default all 1. */
  rewardWeights?: number[];
  /** The reward models' backbones held packed (--frozen_dtype); default float32. */
  frozenDtype?: FrozenDtype;
}

/** Splits comma-separated entries: `--reward_funcs accuracy,format --reward_funcs ./mine.mjs`. */
export function splitList(values: string[]): string[] {
  return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
}

export class RewardSet {
  private constructor(
    readonly sources: RewardSource[],
    readonly weights: number[],
  ) {}

  static async load(spec: RewardSpec, tokenizer: Tokenizer): Promise<RewardSet> {
    const sources: RewardSource[] = [];
    try {
      for (const f of splitList(spec.rewardFuncs)) {
        if (isBuiltinReward(f)) sources.push(builtinReward(f, spec));
        else if (looksLikeModulePath(f)) sources.push(...(await loadUserRewards(f)));
        else throw new Error(`--reward_funcs ${f}: not a built-in reward (accuracy, format, length) nor a module path (./file.mjs, .js, .ts)`);
      }
      for (const dir of spec.rmPaths) {
        const rm = await RewardModelScorer.load(dir, tokenizer, spec.frozenDtype ?? 'float32');
        const base = dir.replace(/\/+$/, '').split('/').pop()!;
        sources.push({ name: base, score: async (b) => rm.score(...rowsOf(b)), dispose: () => rm.dispose() });
      }
      if (!sources.length) throw new Error('no reward: give --reward_funcs (accuracy, format, length, or ./module.mjs) and/or --rm_path');
      const names = sources.map((s) => s.name);
      const dup = names.find((n, i) => names.indexOf(n) !== i);
      if (dup) throw new Error(`two reward functions are named "${dup}": rename one (metrics are kept per name)`);
      const weights = spec.rewardWeights ?? sources.map(() => 1);
      if (weights.length !== sources.length) throw new Error(`--reward_weights: ${weights.length} weights for ${sources.length} reward functions (${names.join(', ')})`);
      return new RewardSet(sources, weights);
    } catch (e) {
      for (const s of sources) s.dispose?.();
      throw e;
    }
  }

  get names(): string[] {
    return this.sources.map((s) => s.name);
  }

  /** Per-source rewards [S][B] (null = none) and the weighted NaN-aware sum [B]. */
  async score(b: RewardBatch): Promise<{ total: number[]; perSource: (number | null)[][] }> {
    const perSource: (number | null)[][] = [];
    for (const s of this.sources) perSource.push(await s.score(b));
    return { total: weightedSum(perSource, this.weights), perSource };
  }

  dispose(): void {
    for (const s of this.sources) s.dispose?.();
  }
}

/** Σ_f w_f·r_f per sample, nulls skipped; a sample with no reward at all gets 0 (as TRL's nansum). */
export function weightedSum(perSource: (number | null)[][], weights: number[]): number[] {
  const B = perSource[0]?.length ?? 0;
  return Array.from({ length: B }, (_, i) => perSource.reduce((a, r, f) => (r[i] === null ? a : a + weights[f]! * r[i]!), 0));
}

/** NaN-aware mean and Bessel-corrected std of one source's rewards (TRL's nanmean / nanstd); NaN when all null. */
export function nanStats(xs: (number | null)[]): { mean: number; std: number } {
  const v = xs.filter((x): x is number => x !== null);
  if (!v.length) return { mean: NaN, std: NaN };
  const mean = v.reduce((a, x) => a + x, 0) / v.length;
  const std = v.length > 1 ? Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / (v.length - 1)) : 0;
  return { mean, std };
}

/** Right-padded prompt + completion rows, their masks and their completion masks, for a reward model. */
function rowsOf(b: RewardBatch): [number[][], number[][], number[][]] {
  const seqs = b.promptIds.map((p, i) => [...p, ...b.completionIds[i]!]);
  const T = Math.max(...seqs.map((s) => s.length));
  return [
    seqs.map((s) => [...s, ...new Array<number>(T - s.length).fill(0)]),
    seqs.map((s) => [...s.map(() => 1), ...new Array<number>(T - s.length).fill(0)]),
    answerMaskRows(b.promptIds.map((p) => p.length), seqs.map((s) => s.length), T),
  ];
}
