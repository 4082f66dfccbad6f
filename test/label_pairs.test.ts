/** label_pairs: pairs from each prompt's ranked answers, and the sentiment judge. */
import { describe, it, expect } from 'vitest';
import { pairsFromGroups } from '../src/cli/label_pairs.js';
import { judgeScores } from '../src/rewards/sentiment.js';
import { loadPreferencePairs } from '../src/data/preference.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('pairsFromGroups', () => {
  const answers = [['a', 'b', 'c', 'd']];
  const scores = [[3, 0, 1, 1]];
  it('all: every two answers of a ranking whose scores differ by the gap', () => {
    const { pairs, ties } = pairsFromGroups(['p'], answers, scores, 1);
    expect(pairs.map((p) => `${p.chosen.value}>${p.rejected.value}`)).toEqual(['a>c', 'a>d', 'a>b', 'c>b', 'd>b']);
    expect(ties).toBe(0);
    expect(pairsFromGroups(['p'], answers, scores, 2).pairs.map((p) => `${p.chosen.value}>${p.rejected.value}`)).toEqual(['a>c', 'a>d', 'a>b']);
  });
  it('best_worst: one pair per prompt; groups without a gap or with equal answers count as ties', () => {
    expect(pairsFromGroups(['p'], answers, scores, 1, 'best_worst').pairs.map((p) => [p.chosen_score, p.rejected_score])).toEqual([[3, 0]]);
    expect(pairsFromGroups(['p', 'q'], [['x', 'x'], ['y', 'z']], [[2, 0], [1, 1]], 1).ties).toBe(2);
  });
  it('writes pairs train_reward_model reads (ShareGPT layout)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pairs-'));
    const file = join(dir, 'pairs.jsonl');
    writeFileSync(file, pairsFromGroups(['Say something.'], answers, scores, 1).pairs.map((p) => JSON.stringify(p)).join('\n'));
    const read = await loadPreferencePairs(file);
    expect(read.format).toBe('sharegpt');
    expect(read.pairs[0]).toMatchObject({ prompt: [{ role: 'user', content: 'Say something.' }], chosen: 'a', rejected: 'c' });
  });
});

describe('sentiment judge', () => {
  it("sums AFINN valences: positive words up, negative down, unknown words 0", () => {
    expect(judgeScores('sentiment', ['I love this great day', 'this is bad and terrible', 'the table is brown'])).toEqual([6, -6, 0]);
  });
});
