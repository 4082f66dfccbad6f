/**
 * Built-in verifiable rewards: `accuracy` (a math answer checked numerically), `format` (a regex) and `length`.
 * Each is a pure function of the completion (and its dataset row), tested in test/grpo_rewards.test.ts.
 */
import type { RewardBatch, RewardSource } from './types.js';

// ---------------------------------------------------------------------------------------------------------------
// accuracy

/** The contents of the last `\boxed{…}` (braces nested), or null. */
export function lastBoxed(text: string): string | null {
  const at = text.lastIndexOf('\\boxed{');
  if (at < 0) return null;
  let depth = 0;
  for (let i = at + 6; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(at + 7, i);
  }
  return null;
}

const NUMBER = /-?\d[\d,]*(?:\.\d+)?|-?\.\d+/g;

/** The last number in the text as a value ("1,234.50" → 1234.5; "$18" → 18; "3/4", "\\frac{3}{4}" → 0.75), or null. */
export function lastNumber(raw: string): number | null {
  const text = raw.replace(/\\[dt]?frac\{(-?\d+)\}\{(\d+)\}/g, '$1/$2'); // LaTeX fractions as a/b
  const frac = [...text.matchAll(/(-?\d+)\s*\/\s*(\d+)/g)].pop();
  const nums = [...text.matchAll(NUMBER)];
  const last = nums.pop();
  if (!last) return null;
  if (frac && frac.index! + frac[0].length >= last.index! + last[0].length && Number(frac[2]) !== 0) return Number(frac[1]) / Number(frac[2]);
  const v = Number(last[0].replace(/,/g, ''));
  return Number.isFinite(v) ? v : null;
}

/** The reference answer of a dataset row: GSM8K's `#### <number>`, a `\boxed{}`, or a bare number. */
export function referenceAnswer(solution: string): number | null {
  const hash = solution.lastIndexOf('####');
  if (hash >= 0) return lastNumber(solution.slice(hash + 4));
  const boxed = lastBoxed(solution);
  return lastNumber(boxed ?? solution);
}

/**
 * The completion's final answer: inside its last `\boxed{}`, else its `<answer>…</answer>`, else after `####`, else the
 * last number it contains.
 */
export function finalAnswer(completion: string): number | null {
  const boxed = lastBoxed(completion);
  if (boxed !== null) return lastNumber(boxed);
  const tag = [...completion.matchAll(/<answer>([\s\S]*?)<\/answer>/g)].pop();
  if (tag) return lastNumber(tag[1]!);
  const hash = completion.lastIndexOf('####');
  if (hash >= 0) return lastNumber(completion.slice(hash + 4));
  return lastNumber(completion);
}

export function sameNumber(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
}

/** Columns that may hold the reference answer, tried in order. */
export const SOLUTION_COLUMNS = ['answer', 'solution', 'ground_truth', 'target'] as const;

/** 1 when the completion's final answer equals the reference numerically, 0 when not, null without a reference. */
export function accuracyReward(completion: string, solution: unknown): number | null {
  if (solution === undefined || solution === null) return null;
  const ref = typeof solution === 'number' ? solution : referenceAnswer(String(solution));
  if (ref === null) return null;
  const got = finalAnswer(completion);
  return got !== null && sameNumber(got, ref) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// format

/** DeepSeek-R1's format: reasoning in <think>, then the answer in <answer>, nothing else around them. */
export const DEFAULT_FORMAT_PATTERN = '^\\s*<think>[\\s\\S]*?</think>\\s*<answer>[\\s\\S]*?</answer>\\s*$';

export function formatReward(completion: string, pattern: RegExp): number {
  pattern.lastIndex = 0;
  return pattern.test(completion) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// length

/**
 * Closeness of the completion's length n (tokens) to a target T: 1 − |n − T| / T, floored at 0. Without a target,
 * DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to L_max − L_cache, then falling linearly to −1 at
 * L_max (L_max = --max_new_tokens, L_cache = a quarter of it).
 */
export function lengthReward(n: number, o: { target?: number; maxNewTokens: number }): number {
  if (o.target !== undefined) return Math.max(0, 1 - Math.abs(n - o.target) / o.target);
  const cache = Math.max(1, Math.floor(o.maxNewTokens / 4));
  const free = o.maxNewTokens - cache;
  return n <= free ? 0 : n >= o.maxNewTokens ? -1 : (free - n) / cache;
}

// ---------------------------------------------------------------------------------------------------------------

export interface BuiltinOptions {
  /** `format`'s regex (JS syntax); default DEFAULT_FORMAT_PATTERN. */
  formatPattern?: string;
  /** `length`'s target in tokens (see lengthReward). */
  lengthTarget?: number;
  maxNewTokens: number;
}

export const BUILTIN_REWARDS = ['accuracy', 'format', 'length'] as const;
export type BuiltinReward = (typeof BUILTIN_REWARDS)[number];

export function isBuiltinReward(name: string): name is BuiltinReward {
  return (BUILTIN_REWARDS as readonly string[]).includes(name);
}

export function builtinReward(name: BuiltinReward, o: BuiltinOptions): RewardSource {
  switch (name) {
    case 'accuracy':
      return {
        name,
        async score(b: RewardBatch) {
          const column = SOLUTION_COLUMNS.find((c) => c in b.extra);
          if (!column) throw new Error(`reward "accuracy" needs the reference answer in a dataset column (${SOLUTION_COLUMNS.join(', ')}); the dataset has ${Object.keys(b.extra).filter((k) => k !== 'completion_ids').join(', ') || 'no other columns'}`);
          return b.completions.map((c, i) => accuracyReward(c, b.extra[column]![i]));
        },
      };
    case 'format': {
      let re: RegExp;
      try {
        re = new RegExp(o.formatPattern ?? DEFAULT_FORMAT_PATTERN, 'u');
      } catch (e) {
        throw new Error(`--format_pattern: not a valid regular expression (${(e as Error).message})`);
      }
      return { name, score: async (b: RewardBatch) => b.completions.map((c) => formatReward(c, re)) };
    }
    case 'length':
      return { name, score: async (b: RewardBatch) => b.completionIds.map((ids) => lengthReward(ids.length, { target: o.lengthTarget, maxNewTokens: o.maxNewTokens })) };
  }
}
