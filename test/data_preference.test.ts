import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  getTemplate,
  loadPreferencePairs,
  loadPrompts,
  parseHumanAssistantDialogue,
  readRecords,
  splitSharedPrompt,
} from '../src/data/index.js';

const DS = 'datasets';
const tmp = mkdtempSync(join(tmpdir(), 'data-pref-'));
function write(name: string, content: unknown): string {
  const path = join(tmp, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('hh-rlhf', () => {
  const file = `${DS}/preference/hh-rlhf-harmless-base-test.jsonl.gz`;

  it('splits the shared prompt at the last "\\n\\nAssistant:" and parses the turns', async () => {
    const { format, pairs } = await loadPreferencePairs(file);
    expect(format).toBe('hh_rlhf');
    expect(pairs).toHaveLength(300);
    const first = pairs[0]!;
    expect(first.prompt.slice(0, 3)).toEqual([
      { role: 'user', content: 'what are some pranks with a pen i can do?' },
      { role: 'assistant', content: 'Are you looking for practical joke ideas?' },
      { role: 'user', content: 'yep' },
    ]);
    expect(first.prompt[first.prompt.length - 1]).toEqual({ role: 'user', content: 'okay some of these do not have anything to do with pens' });
    expect(first.chosen).toBe('No, sorry!  All of these involve a pen, the point is that you can get funny results by doing pranks with pens.');
    expect(first.location).toEqual({ file, line: 1 });
  });

  it('the human_assistant template renders every pair back to the original text', async () => {
    const { pairs } = await loadPreferencePairs(file);
    const { records } = await readRecords(file);
    const t = getTemplate('human_assistant');
    pairs.forEach((p, i) => {
      expect(t.renderPrompt(p.prompt) + ' ' + p.chosen).toBe(records[i]!.value.chosen);
      expect(t.renderPrompt(p.prompt) + ' ' + p.rejected).toBe(records[i]!.value.rejected);
    });
  });

  it('an answer containing "\\n\\nAssistant:" itself: the cut is the last marker both texts share', () => {
    const prompt = '\n\nHuman: Is that drag kings?';
    const chosen = `${prompt}\n\nAssistant: No.\n\nAssistant: Drag kings are women.`;
    const rejected = `${prompt}\n\nAssistant: Yes.`;
    expect(splitSharedPrompt(chosen, rejected)).toEqual({
      prompt: `${prompt}\n\nAssistant:`,
      chosen: 'No.\n\nAssistant: Drag kings are women.',
      rejected: 'Yes.',
    });
    expect(splitSharedPrompt('no markers', 'at all')).toBeUndefined();
  });

  it('parses dialogue text: a preamble is a system message, unmarked text a user message', () => {
    expect(parseHumanAssistantDialogue('Be kind.\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:')).toEqual([
      { role: 'system', content: 'Be kind.' },
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'bye' },
    ]);
    expect(parseHumanAssistantDialogue('What is 2+2?')).toEqual([{ role: 'user', content: 'What is 2+2?' }]);
  });

  it('missing or unshared fields name the line', async () => {
    const path = write('hh-bad.jsonl', [
      JSON.stringify({ chosen: '\n\nHuman: a\n\nAssistant: b', rejected: '\n\nHuman: a\n\nAssistant: c' }),
      JSON.stringify({ chosen: '\n\nHuman: a\n\nAssistant: b' }),
      JSON.stringify({ chosen: '\n\nHuman: x\n\nAssistant: b', rejected: '\n\nHuman: y\n\nAssistant: c' }),
    ].join('\n'));
    await expect(loadPreferencePairs(path)).rejects.toThrow(`${path}:2: missing field "rejected"`);
    const r = await loadPreferencePairs(path, { skipBadRecords: true });
    expect(r.pairs).toHaveLength(1);
    expect(r.skipped).toBe(2);
    expect(r.skippedExamples[1]).toMatch(/:3: fields "chosen" and "rejected" share no/);
  });
});

describe('ShareGPT DPO demos and rm-static', () => {
  it('dpo_en_demo: conversations + chosen/rejected turn objects, system turns kept', async () => {
    const { format, pairs } = await loadPreferencePairs(`${DS}/preference/dpo_en_demo.json`);
    expect(format).toBe('sharegpt');
    expect(pairs).toHaveLength(60);
    expect(pairs[0]!.prompt).toEqual([
      { role: 'user', content: "Hi! I'd like to create a new language game simulating the first person perspective of a character named Angela." },
    ]);
    expect(pairs[0]!.chosen).toMatch(/^That sounds like a fun and engaging idea!/);
    expect(pairs.every((p) => p.prompt[p.prompt.length - 1]!.role === 'user')).toBe(true);
    expect(pairs.some((p) => p.prompt[0]!.role === 'system')).toBe(true);
    expect(pairs.some((p) => p.prompt.length > 1 && p.prompt[1]!.role === 'assistant')).toBe(true);
  });

  it('dpo_zh_demo', async () => {
    const { pairs } = await loadPreferencePairs(`${DS}/preference/dpo_zh_demo.json`);
    expect(pairs).toHaveLength(60);
    expect(pairs[0]!.prompt[0]!.content.startsWith('国会的转发')).toBe(true);
    expect(pairs[0]!.chosen).not.toBe(pairs[0]!.rejected);
  });

  it('rm-static prompt/chosen/rejected(/response)', async () => {
    const path = write('rm.jsonl', JSON.stringify({ prompt: '\n\nHuman: Hi?\n\nAssistant:', response: ' Hello!', chosen: ' Hello!', rejected: ' Go away.' }));
    const { format, pairs } = await loadPreferencePairs(path);
    expect(format).toBe('rm_static');
    expect(pairs[0]).toEqual({ prompt: [{ role: 'user', content: 'Hi?' }], chosen: 'Hello!', rejected: 'Go away.', location: { file: path, line: 1 } });
  });

  it('a chosen turn from the human, or a prompt ending in a reply, is an error', async () => {
    const wrong = write('dpo-bad.json', [{ conversations: [{ from: 'human', value: 'q' }], chosen: { from: 'human', value: 'x' }, rejected: { from: 'gpt', value: 'y' } }]);
    await expect(loadPreferencePairs(wrong)).rejects.toThrow(`${wrong}[0]: field "chosen" must be an assistant (gpt) turn`);
    const ending = write('dpo-bad2.json', [{ conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }], chosen: 'x', rejected: 'y' }]);
    await expect(loadPreferencePairs(ending)).rejects.toThrow(/\[0\]: the prompt must end with a user \(human\) turn/);
  });
});

describe('prompt datasets', () => {
  it('awesome-chatgpt-prompts.csv: the prompt column, one user message each', async () => {
    const r = await loadPrompts(`${DS}/prompts/awesome-chatgpt-prompts.csv`);
    expect(r.source).toBe('prompt');
    expect(r.prompts).toHaveLength(209);
    expect(r.prompts[0]!.messages).toHaveLength(1);
    expect(r.prompts[0]!.messages[0]!.role).toBe('user');
    expect(r.prompts[0]!.messages[0]!.content).toMatch(/^Imagine you are an experienced Ethereum developer/);
    const act = await loadPrompts(`${DS}/prompts/awesome-chatgpt-prompts.csv`, { column: 'act', maxRecords: 2 });
    expect(act.prompts.map((p) => p.messages[0]!.content)).toEqual(['An Ethereum Developer', 'SEO Prompt']);
  });

  it('alpaca instruction(+input), conversations and hh-rlhf as prompt sources', async () => {
    const alpaca = await loadPrompts(`${DS}/sft/alpaca_en_demo.json`, { maxRecords: 3 });
    expect(alpaca.source).toBe('instruction');
    expect(alpaca.prompts[0]!.alpaca).toEqual({ instruction: 'Describe a process of making crepes.', input: '' });
    const conv = await loadPrompts(`${DS}/sft/fastchat-dummy_conversation.json`, { maxRecords: 1 });
    expect(conv.prompts[0]!.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    const hh = await loadPrompts(`${DS}/preference/hh-rlhf-harmless-base-test.jsonl.gz`, { maxRecords: 2 });
    expect(hh.source).toBe('preference');
    expect(hh.prompts[1]!.messages[hh.prompts[1]!.messages.length - 1]!.role).toBe('user');
    const text = await loadPrompts(write('p.jsonl', '{"text": "Tell me a joke."}\n{"text": ""}\n'), { skipBadRecords: true });
    expect(text.prompts.map((p) => p.messages[0]!.content)).toEqual(['Tell me a joke.']);
    expect(text.skippedExamples[0]).toMatch(/p.jsonl:2: field "text" is empty/);
  });

  it('no prompt column is an error listing what was looked for', async () => {
    await expect(loadPrompts(write('np.json', [{ act: 'x' }]))).rejects.toThrow(/no prompt column among fields \(act\); expected one of prompt, instruction/);
  });
});
