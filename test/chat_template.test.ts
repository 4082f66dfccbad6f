/**
 * The model's own chat template: rendered text and ids equal transformers' apply_chat_template for every fixture
 * that has one (both template locations and the named-list form), SFT labels cover exactly the assistant turns, and
 * a template's raise_exception names the file and the record.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/hub/tokenizer.js';
import {
  ChatTemplate, chatTemplateOf, CHAT_TEMPLATE_NAME, IGNORE_INDEX, joinSegments, resolvePromptTemplate, strftime, tokenizeChatSamples,
  type ChatMessage,
} from '../src/data/index.js';

const FIXTURES = 'test/fixtures/hf';
const FAMILIES = ['qwen2', 'qwen3', 'mistral', 'llama3', 'phi3', 'gemma2'];

interface ChatCase {
  messages: ChatMessage[];
  add_generation_prompt: boolean;
  text: string;
  ids: number[];
}

function chatCases(family: string): ChatCase[] {
  return (JSON.parse(readFileSync(join(FIXTURES, family, 'expected.json'), 'utf8')) as { chat: ChatCase[] }).chat;
}

async function templateOf(dir: string): Promise<{ tokenizer: Tokenizer; template: ChatTemplate }> {
  const tokenizer = await Tokenizer.fromDir(dir);
  const template = chatTemplateOf(tokenizer);
  if (!template) throw new Error(`${dir}: no chat template`);
  return { tokenizer, template };
}

const u = (content: string): ChatMessage => ({ role: 'user', content });
const a = (content: string): ChatMessage => ({ role: 'assistant', content });

describe.each(FAMILIES)('chat template of %s', (family) => {
  const dir = join(FIXTURES, family);

  it('renders and tokenizes every conversation as transformers does (add_generation_prompt true and false)', async () => {
    const { tokenizer, template } = await templateOf(dir);
    const cases = chatCases(family);
    expect(cases.some((c) => c.add_generation_prompt)).toBe(true);
    expect(cases.some((c) => !c.add_generation_prompt)).toBe(true);
    for (const c of cases) {
      const text = template.renderText(c.messages, c.add_generation_prompt);
      expect(text).toBe(c.text);
      expect(tokenizer.encode(text, { addSpecialTokens: false })).toEqual(c.ids);
      if (c.add_generation_prompt) expect(template.renderPrompt(c.messages)).toBe(c.text);
    }
  });

  it('reads the older form too: chat_template inside tokenizer_config.json, as a string or a list with "default"', async () => {
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object;
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const jinja = readFileSync(join(dir, 'chat_template.jinja'), 'utf8');
    const forms = [jinja, [{ name: 'tool_use', template: 'unused' }, { name: 'default', template: jinja }]];
    for (const form of forms) {
      const tok = Tokenizer.fromJson(json, { ...config, chat_template: form }, join(dir, 'tokenizer.json'));
      expect(tok.chatTemplateSource).toBe(join(dir, 'tokenizer_config.json'));
      for (const c of chatCases(family)) expect(chatTemplateOf(tok)!.renderText(c.messages, c.add_generation_prompt)).toBe(c.text);
    }
  });

  it('SFT trains every assistant turn of a multi-turn conversation and nothing else', async () => {
    const { tokenizer, template } = await templateOf(dir);
    const conversations: ChatMessage[][] = [
      [u('What is RLHF?'), a('Training from human feedback.'), u('写一首诗'), a('床前明月光'), u('Thanks!'), a('You are welcome.')],
      ...chatCases(family).filter((c) => c.messages[c.messages.length - 1]!.role === 'assistant').map((c) => c.messages),
    ];
    for (const messages of conversations) {
      const full = template.renderText(messages, false);
      const { samples } = tokenizeChatSamples([{ messages }], template, tokenizer, { maxLen: 4096 });
      const { inputIds, labels } = samples[0]!;
      expect(inputIds).toEqual(tokenizer.encode(full, { addSpecialTokens: false })); // one text, no BOS/EOS added
      // maximal runs of trained tokens: one per assistant turn, holding its reply
      const runs: number[][] = [];
      labels.forEach((l, t) => {
        if (l === IGNORE_INDEX) return;
        if (t > 0 && labels[t - 1] !== IGNORE_INDEX) runs[runs.length - 1]!.push(l);
        else runs.push([l]);
      });
      const replies = messages.filter((m) => m.role === 'assistant');
      expect(runs.length).toBe(replies.length);
      runs.forEach((run, i) => {
        const text = tokenizer.decode(run);
        expect(text).toContain(replies[i]!.content.trim());
        for (const m of messages) if (m.role !== 'assistant') expect(text).not.toContain(m.content);
        // the turn's end marker is trained, so the model learns to stop
        expect(template.stop.length).toBe(1);
        if (i < runs.length - 1) expect(text.endsWith(template.stop[0]!)).toBe(true);
        else expect(text).toContain(template.stop[0]!);
      });
      // the untrained tokens are the rest: every user turn and the generation headers
      const untrained = tokenizer.decode(inputIds.filter((_, t) => labels[t] === IGNORE_INDEX));
      for (const m of messages) if (m.role === 'user') expect(untrained).toContain(m.content);
      expect(joinSegments(template.render(messages))).toBe(full);
    }
  });
});

describe('chat template errors and selection', () => {
  it("raise_exception becomes an error naming the template file and the record", async () => {
    const { tokenizer, template } = await templateOf(join(FIXTURES, 'mistral'));
    const messages: ChatMessage[] = [u('one'), u('two'), a('three')];
    const location = { file: 'data/train.jsonl', line: 7 };
    expect(() => tokenizeChatSamples([{ messages, location }], template, tokenizer, { maxLen: 64 })).toThrow(
      /data\/train\.jsonl:7: template "chat_template": .*mistral\/chat_template\.jinja: raise_exception: Conversation roles must alternate/,
    );
  });

  it('auto takes the model template when there is one, else the stage default; chat_template without one is an error', async () => {
    const { tokenizer } = await templateOf(join(FIXTURES, 'qwen2'));
    const auto = resolvePromptTemplate(undefined, tokenizer, 'alpaca');
    expect(auto.template.name).toBe(CHAT_TEMPLATE_NAME);
    expect(auto.note).toContain('chat_template.jinja');
    expect(resolvePromptTemplate('alpaca', tokenizer, 'alpaca').template.name).toBe('alpaca');
    const plain = await Tokenizer.fromDir(join(FIXTURES, 'gpt2'));
    expect(existsSync(join(FIXTURES, 'gpt2', 'chat_template.jinja'))).toBe(false);
    expect(resolvePromptTemplate('auto', plain, 'human_assistant').template.name).toBe('human_assistant');
    expect(() => resolvePromptTemplate(CHAT_TEMPLATE_NAME, plain, 'alpaca')).toThrow(/has no chat template/);
  });

  it('templates may call range() and strftime_now()', () => {
    const t = new ChatTemplate({ template: '{% for i in range(1, 4) %}{{ i }}{% endfor %} {{ strftime_now("%Y") }}', source: 'x.jinja', specialTokens: {} });
    expect(t.renderText([], false)).toBe(`123 ${new Date().getFullYear()}`);
  });

  it('strftime_now formats dates as Python does', () => {
    const d = new Date(2026, 0, 5, 14, 3, 9);
    expect(strftime('%d %b %Y', d)).toBe('05 Jan 2026');
    expect(strftime('%A %B %-d %H:%M:%S %j %%', d)).toBe('Monday January %-d 14:03:09 005 %');
  });
});
