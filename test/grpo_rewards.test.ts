/** Reward sources: the built-ins, user modules (values, null, errors naming the function and sample), weights. */
import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  accuracyReward, builtinReward, DEFAULT_FORMAT_PATTERN, finalAnswer, formatReward, lastBoxed, lengthReward, referenceAnswer,
} from '../src/rewards/builtins.js';
import { loadUserRewards } from '../src/rewards/user_module.js';
import { nanStats, RewardSet, splitList, weightedSum } from '../src/rewards/combine.js';
import type { RewardBatch } from '../src/rewards/types.js';
import type { Tokenizer } from '../src/hub/tokenizer.js';

const batch = (completions: string[], extra: Record<string, unknown[]> = {}): RewardBatch => ({
  prompts: completions.map((_, i) => `question ${i}`), completions, extra: { ...extra, completion_ids: completions.map((c) => [...c].map((ch) => ch.charCodeAt(0))) },
  promptIds: completions.map(() => [1]), completionIds: completions.map((c) => [...c].map((ch) => ch.charCodeAt(0))),
});
const noTokenizer = {} as Tokenizer;

describe('built-in rewards', () => {
  it('accuracy: GSM8K "####" and \\boxed{} references, the completion\'s final answer compared numerically', () => {
    expect(referenceAnswer('She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18')).toBe(18);
    expect(referenceAnswer('so the answer is \\boxed{\\frac{1}{2}}')).toBe(0.5);
    expect(referenceAnswer('#### 1,234')).toBe(1234);
    expect(lastBoxed('a \\boxed{x{y}} b \\boxed{42}')).toBe('42');
    expect(finalAnswer('<think>16 - 3 - 4 = 9, 9 * 2 = 18</think><answer>$18.00</answer>')).toBe(18);
    expect(finalAnswer('It is 7 apples, so \\boxed{12}.')).toBe(12);
    expect(finalAnswer('first 3 then 4, finally 5')).toBe(5);
    expect(accuracyReward('The answer is 18.', '... #### 18')).toBe(1);
    expect(accuracyReward('The answer is 18.0', '#### 18')).toBe(1);
    expect(accuracyReward('The answer is 17', '#### 18')).toBe(0);
    expect(accuracyReward('no number at all', '#### 18')).toBe(0);
    expect(accuracyReward('18', 'no reference here')).toBeNull(); // nothing to check against: no reward
    expect(accuracyReward('18', undefined)).toBeNull();
  });
  it('format: the R1 pattern by default, any regex when given', () => {
    const re = new RegExp(DEFAULT_FORMAT_PATTERN, 'u');
    expect(formatReward('<think>add them</think>\n<answer>18</answer>', re)).toBe(1);
    expect(formatReward('<think>add them</think> 18', re)).toBe(0);
    expect(formatReward('<answer>18</answer><think>x</think>', re)).toBe(0);
    expect(formatReward('it is 7', /\d/u)).toBe(1);
  });
  it('length: closeness to a target, or DAPO\'s soft overlong punishment', () => {
    expect(lengthReward(8, { target: 8, maxNewTokens: 32 })).toBe(1);
    expect(lengthReward(12, { target: 8, maxNewTokens: 32 })).toBe(0.5);
    expect(lengthReward(20, { target: 8, maxNewTokens: 32 })).toBe(0);
    expect(lengthReward(24, { maxNewTokens: 32 })).toBe(0); // L_max − L_cache = 24
    expect(lengthReward(28, { maxNewTokens: 32 })).toBe(-0.5);
    expect(lengthReward(32, { maxNewTokens: 32 })).toBe(-1);
  });
  it('accuracy names the columns it looked for when the dataset has none', async () => {
    await expect(builtinReward('accuracy', { maxNewTokens: 8 }).score(batch(['1'], { question: ['q'] }))).rejects.toThrow(/answer, solution.*the dataset has question/);
  });
});

describe('user reward modules', () => {
  const dir = mkdtempSync(join(tmpdir(), 'grpo-rewards-'));
  const write = (name: string, body: string) => {
    const file = join(dir, name);
    writeFileSync(file, body);
    return file;
  };

  it('every exported function is a reward; extra carries the columns and the completion ids; async and null allowed', async () => {
    const file = write('mine.mjs', `
      export function mentionsAnswer(prompts, completions, extra) { return completions.map((c, i) => (c.includes(String(extra.answer[i])) ? 1 : 0)); }
      export const idCount = async (prompts, completions, extra) => extra.completion_ids.map((ids) => ids.length);
      export function sometimes(prompts, completions) { return completions.map((c) => (c.startsWith('x') ? null : 0.5)); }
      export const notAFunction = 3;
    `);
    const fns = await loadUserRewards(file);
    expect(fns.map((f) => f.name)).toEqual(['mentionsAnswer', 'idCount', 'sometimes']);
    const b = batch(['x 42', 'no'], { answer: [42, 7] });
    expect(await fns[0]!.score(b)).toEqual([1, 0]);
    expect(await fns[1]!.score(b)).toEqual([4, 2]);
    expect(await fns[2]!.score(b)).toEqual([null, 0.5]);
  });

  it('a .ts module loads through tsx', async () => {
    const file = write('typed.ts', 'export function short(p: string[], c: string[]): number[] { return c.map((s: string) => (s.length < 3 ? 1 : 0)); }\n');
    const [fn] = await loadUserRewards(file);
    expect(await fn!.score(batch(['ab', 'abcd']))).toEqual([1, 0]);
  });

  it('a throwing function, a wrong length or a non-number is an error naming the function and the sample', async () => {
    const file = write('bad.mjs', `
      export function picky(prompts, completions) { return completions.map((c) => { if (c === 'boom') throw new Error('cannot parse'); return 1; }); }
      export function short(prompts, completions) { return [1]; }
      export function wordy(prompts, completions) { return completions.map((c, i) => (i === 1 ? 'high' : 1)); }
    `);
    const [picky, short, wordy] = await loadUserRewards(file);
    const b = batch(['fine', 'boom', 'ok']);
    await expect(picky!.score(b)).rejects.toThrow(/reward function "picky" threw on sample 1 \(prompt "question 1"\): cannot parse/);
    await expect(short!.score(b)).rejects.toThrow(/reward function "short" returned 1 values for 3 completions/);
    await expect(wordy!.score(b)).rejects.toThrow(/reward function "wordy" returned "high" for sample 1/);
    await expect(loadUserRewards(write('empty.mjs', 'export const x = 1;\n'))).rejects.toThrow(/exports no function/);
    await expect(loadUserRewards(join(dir, 'missing.mjs'))).rejects.toThrow(/no such file/);
  });

  it('weights and nulls combine as TRL does (nansum), per-function stats skip nulls', async () => {
    expect(weightedSum([[1, null, 0], [0.5, 0.5, null]], [1, 2])).toEqual([2, 1, 0]);
    expect(nanStats([1, null, 3])).toEqual({ mean: 2, std: Math.SQRT2 });
    expect(Number.isNaN(nanStats([null]).mean)).toBe(true);
    const set = await RewardSet.load({ rewardFuncs: ['format,length'], rmPaths: [], rewardWeights: [2, 1], formatPattern: '\\d', lengthTarget: 2, maxNewTokens: 8 }, noTokenizer);
    expect(set.names).toEqual(['format', 'length']);
    const out = await set.score(batch(['a1', 'bbbb']));
    expect(out.perSource).toEqual([[1, 0], [1, 0]]);
    expect(out.total).toEqual([3, 0]);
    await expect(RewardSet.load({ rewardFuncs: ['format'], rmPaths: [], rewardWeights: [1, 2], maxNewTokens: 8 }, noTokenizer)).rejects.toThrow(/2 weights for 1 reward functions/);
    await expect(RewardSet.load({ rewardFuncs: ['acuracy'], rmPaths: [], maxNewTokens: 8 }, noTokenizer)).rejects.toThrow(/not a built-in reward/);
    expect(splitList(['accuracy, format', './x.mjs'])).toEqual(['accuracy', 'format', './x.mjs']);
  });
});

describe('reward models as a reward source', () => {
  it('--rm_path scores prompt + completion ids with the model\'s value head (the toy marked-share reward model)', async () => {
    const { tf } = await import('../src/engine/tf.js');
    await tf.setBackend('cpu');
    const { buildToyRewardModel, tempDir } = await import('./ppo_helpers.js');
    const { Tokenizer } = await import('../src/hub/tokenizer.js');
    const rm = await buildToyRewardModel(join(tempDir('grpo-rm'), 'rm'));
    const set = await RewardSet.load({ rewardFuncs: [], rmPaths: [rm], maxNewTokens: 8 }, await Tokenizer.fromDir(rm));
    expect(set.names).toEqual(['rm']);
    const b: RewardBatch = {
      prompts: ['a', 'b', 'c'], completions: ['', '', ''], extra: {}, promptIds: [[4, 6], [4, 6], [4]],
      completionIds: [[2, 8, 12, 14], [13, 23, 33, 43], [13, 23]], // none, 4 of 6, 2 of 3 marked (ids ≡ 3 mod 10)
    };
    const { total } = await set.score(b);
    expect(total[0]!).toBeLessThan(-0.4); // −0.5 for no marked token
    expect(total[1]!).toBeGreaterThan(total[0]!);
    expect(Math.abs(total[1]! - total[2]!)).toBeLessThan(1e-3); // same marked share, different lengths and padding
    set.dispose();
  });
});
