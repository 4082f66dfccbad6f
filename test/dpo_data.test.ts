/** DPO data preparation: truncation keeps the prompt's end and the answer's start (counted), equal answers are
 * dropped (counted), batches mark exactly the answer tokens, and every KTO example gets another's answer as its KL
 * sample. */
import { describe, expect, it } from 'vitest';
import { getTemplate } from '../src/data/templates/index.js';
import { collateDpoPairs, collateKto, tokenizeDpoPairs, tokenizeKtoExamples } from '../src/dpo/data.js';

/** One token per character (code point), EOS 1, BOS 2. */
const chars = { encode: (t: string) => [...t].map((c) => c.codePointAt(0)!), bosTokenId: 2, eosTokenId: 1 };
const plain = getTemplate('plain');
const pair = (prompt: string, chosen: string, rejected: string) => ({ prompt: [{ role: 'user' as const, content: prompt }], chosen, rejected });

describe('tokenizeDpoPairs', () => {
  it('appends EOS, keeps the prompt end and the answer start, counts cuts and drops equal answers', () => {
    const pairs = [pair('abcdefghij', 'xy', 'uvw'), pair('p', 'same', 'same')];
    const { items, stats } = tokenizeDpoPairs(pairs, plain, chars, { maxLen: 8, addBos: true });
    expect(stats.droppedIdentical).toBe(1);
    expect(items).toHaveLength(1);
    const { chosen, rejected } = items[0]!;
    const text = (ids: number[]) => ids.map((i) => (i === 1 ? '<eos>' : i === 2 ? '<bos>' : String.fromCodePoint(i))).join('');
    expect(chosen.prompt[0]).toBe(2); // BOS stays first
    expect(text(chosen.prompt)).toBe('<bos>hij\n'); // the prompt's end survives (plain ends a prompt with a newline)
    expect(text(chosen.answer)).toBe('xy<eos>');
    expect(chosen.prompt.length + chosen.answer.length).toBe(8);
    expect(text(rejected.answer)).toBe('uvw<eos>');
    expect(stats.promptTruncated).toBe(2);
    expect(stats.answerTruncated).toBe(0);
    const long = tokenizeDpoPairs([pair('ab', 'klmnopqrst', 'z')], plain, chars, { maxLen: 6 });
    expect(text(long.items[0]!.chosen.answer)).toBe('klm'); // the answer's start, without its EOS (the prompt keeps half the room)
    expect(long.stats.answerTruncated).toBe(1);
  });

  it('batches rows chosen-first, right-padded, with the answer tokens marked', () => {
    const { items } = tokenizeDpoPairs([pair('ab', 'c', 'de'), pair('fgh', 'ij', 'k')], plain, chars, { maxLen: 16 });
    const b = collateDpoPairs(items, 0).sequences;
    expect(b.inputIds).toHaveLength(4);
    const T = b.inputIds[0]!.length;
    b.inputIds.forEach((row, r) => {
      const side = r < 2 ? items[r]!.chosen : items[r - 2]!.rejected;
      const n = side.prompt.length + side.answer.length;
      expect(row.slice(0, n)).toEqual([...side.prompt, ...side.answer]);
      expect(b.attentionMask[r]).toEqual([...Array(n).fill(1), ...Array(T - n).fill(0)]);
      expect(b.completionMask[r]!.reduce((s, x) => s + x, 0)).toBe(side.answer.length);
      expect(b.completionMask[r]!.indexOf(1)).toBe(side.prompt.length);
    });
  });
});

describe('tokenizeKtoExamples', () => {
  it("pairs each prompt with another example's answer, within groups of the batch size", () => {
    const ex = ['a', 'b', 'c', 'd', 'e'].map((p, i) => ({ prompt: [{ role: 'user' as const, content: p }], completion: `${p}${p}`, desirable: i % 2 === 0 }));
    const { items } = tokenizeKtoExamples(ex, plain, chars, { maxLen: 32, batchSize: 2, seed: 1 });
    expect(items).toHaveLength(5);
    const answers = items.map((it) => it.completion.answer.join());
    for (const it of items) expect(it.kl.prompt).toEqual(it.completion.prompt);
    // every KL answer is some example's answer, and (groups of 2) another's but for a group of one
    expect(items.filter((it) => it.kl.answer.join() !== it.completion.answer.join())).toHaveLength(4);
    for (const it of items) expect(answers).toContain(it.kl.answer.join());
    const b = collateKto(items.slice(0, 2), 0);
    expect(b.sequences.inputIds).toHaveLength(4); // the completions, then their KL samples
  });
});
