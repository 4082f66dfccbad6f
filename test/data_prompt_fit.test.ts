/** fitPrompt: a long prompt is shortened inside the user's text; the template's header and answer cue stay whole. */
import { describe, it, expect } from 'vitest';
import { fitPrompt } from '../src/data/prompt_fit.js';
import { getTemplate } from '../src/data/templates/index.js';
import type { ChatSample } from '../src/data/types.js';

const alpaca = getTemplate('alpaca');
const render = (s: ChatSample) => alpaca.renderPrompt(s.messages, { alpaca: s.alpaca });
// One "token" per whitespace-separated word: easy to count by hand.
const encode = (t: string) => t.split(/\s+/).filter(Boolean).map((w) => w.length);

describe('fitPrompt', () => {
  const words = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
  const sample: ChatSample = { messages: [{ role: 'user', content: words }] };
  const budgetOf = (s: ChatSample) => encode(render(s)).length;

  it('leaves a prompt that fits alone', () => {
    const f = fitPrompt(sample, render, encode, 1000);
    expect(f.cut).toBe(false);
    expect(f.text).toBe(render(sample));
  });

  it('keeps the beginning of the user text, whole words, and every template part', () => {
    const empty = budgetOf({ messages: [{ role: 'user', content: '' }] });
    const f = fitPrompt(sample, render, encode, empty + 10, [7]);
    expect(f.cut).toBe(true);
    expect(f.cutTemplate).toBe(false);
    expect(f.ids.length).toBeLessThanOrEqual(empty + 10);
    expect(f.ids[0]).toBe(7);
    expect(f.text.startsWith('Below is an instruction')).toBe(true);
    expect(f.text).toMatch(/### Instruction:\nw0 w1 w2 .*w8\n\n### Response:$/);
    expect(f.text).not.toContain('w9'); // 9 words fit beside the prefix token
  });

  it("shortens alpaca's input before its instruction", () => {
    const s: ChatSample = { messages: [{ role: 'user', content: `Summarize\n${words}` }], alpaca: { instruction: 'Summarize', input: words } };
    const f = fitPrompt(s, render, encode, budgetOf(s) - 20);
    expect(f.text).toContain('### Instruction:\nSummarize\n\n### Input:\nw0 w1');
    expect(f.text).not.toContain('w39');
    expect(f.text.endsWith('### Response:')).toBe(true);
  });

  it('drops the start only when the template alone is over the budget, and says so', () => {
    const f = fitPrompt(sample, render, encode, 5);
    expect(f.cutTemplate).toBe(true);
    expect(f.ids).toHaveLength(5);
  });
});
