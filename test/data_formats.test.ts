import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isChatSample, loadSftSamples, type ChatSample, type Sample, type TextSample } from '../src/data/index.js';

const DS = 'datasets';
const tmp = mkdtempSync(join(tmpdir(), 'data-formats-'));
function write(name: string, content: unknown): string {
  const path = join(tmp, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}
const chat = (s: Sample | undefined): ChatSample => {
  if (!s || !isChatSample(s)) throw new Error('expected a chat sample');
  return s;
};
const text = (s: Sample | undefined): TextSample => {
  if (!s || isChatSample(s)) throw new Error('expected a text sample');
  return s;
};

describe('formats on the real slices', () => {
  it('alpaca (English): user/assistant with the alpaca fields kept apart', async () => {
    const r = await loadSftSamples(`${DS}/sft/alpaca_en_demo.json`);
    expect(r.format).toBe('alpaca');
    expect(r.samples).toHaveLength(200);
    const first = chat(r.samples[0]);
    expect(first.messages[0]).toEqual({ role: 'user', content: 'Describe a process of making crepes.' });
    expect(first.messages[1]!.role).toBe('assistant');
    expect(first.messages[1]!.content).toMatch(/^Making crepes is an easy and delicious process!/);
    expect(first.alpaca).toEqual({ instruction: 'Describe a process of making crepes.', input: '' });
    // Records with a non-empty input: the user turn joins them, the alpaca fields keep them apart.
    const withInput = r.samples.map(chat).find((s) => s.alpaca!.input !== '')!;
    expect(withInput.messages[0]!.content).toBe(`${withInput.alpaca!.instruction}\n${withInput.alpaca!.input}`);
    expect(withInput.location!.index).toBeGreaterThan(0);
  });

  it('alpaca (Chinese) and BELLE (JSONL named .json)', async () => {
    const zh = await loadSftSamples(`${DS}/sft/alpaca_zh_demo.json`);
    expect([zh.format, zh.samples.length]).toEqual(['alpaca', 100]);
    expect(chat(zh.samples[0]).messages[0]!.content).toBe('识别并解释给定列表中的两个科学理论：细胞理论和日心说。');
    const belle = await loadSftSamples(`${DS}/sft/belle-dev1K.json`);
    expect([belle.format, belle.samples.length]).toEqual(['alpaca', 100]);
    expect(chat(belle.samples[0]).location).toEqual({ file: `${DS}/sft/belle-dev1K.json`, line: 1 });
  });

  it('self-instruct: one sample per instance', async () => {
    const r = await loadSftSamples(`${DS}/sft/self-instruct-seed_tasks.jsonl`);
    expect(r.format).toBe('self_instruct');
    expect(r.samples).toHaveLength(50); // every one of the first 50 seed tasks has exactly one instance
    const antonyms = chat(r.samples[1]);
    expect(antonyms.alpaca).toEqual({ instruction: 'What is the relation between the given pairs?', input: 'Night : Day :: Right : Left' });
    expect(antonyms.messages[1]).toEqual({ role: 'assistant', content: 'The relation between the given pairs is that they are opposites.' });
  });

  it('FastChat / ShareGPT conversations', async () => {
    const r = await loadSftSamples(`${DS}/sft/fastchat-dummy_conversation.json`);
    expect(r.format).toBe('conversations');
    expect(r.samples).toHaveLength(50);
    expect(chat(r.samples[0]).messages).toEqual([
      { role: 'user', content: 'Who are you?' },
      { role: 'assistant', content: 'I am Vicuna, a language model trained by researchers from Large Model Systems Organization (LMSYS).' },
      { role: 'user', content: 'Have a nice day!' },
      { role: 'assistant', content: 'You too!' },
    ]);
  });

  it('plain text: tinyshakespeare and the chinese-poetry files', async () => {
    const shakespeare = await loadSftSamples(`${DS}/pretrain/tinyshakespeare.txt`);
    expect(shakespeare.format).toBe('text');
    expect(text(shakespeare.samples[0]).text.length).toBeGreaterThan(100_000);
    const tang = await loadSftSamples(`${DS}/pretrain/tangshi300.json`);
    expect([tang.format, tang.samples.length]).toEqual(['poetry', 366]);
    expect(text(tang.samples[0]).text).toBe('在嶽詠蟬\n駱賓王\n西陸蟬聲唱，南冠客思侵。\n那堪玄鬢影，來對白頭吟。\n露重飛難進，風多響易沈。\n無人信高潔，誰爲表予心。');
    const ci = await loadSftSamples(`${DS}/pretrain/songci300.json`);
    expect(text(ci.samples[0]).text.startsWith('湘春夜月\n黄孝迈\n近清明。')).toBe(true); // rhythmic is the title
  });
});

describe('formats from small files', () => {
  it('ChatGLM content/summary and prompt/response with history', async () => {
    const adgen = await loadSftSamples(write('adgen.jsonl', '{"content": "类型#裙", "summary": "这条裙子"}\n'));
    expect(adgen.format).toBe('chatglm');
    expect(chat(adgen.samples[0]).messages).toEqual([
      { role: 'user', content: '类型#裙' },
      { role: 'assistant', content: '这条裙子' },
    ]);
    const glm = await loadSftSamples(write('glm.json', [{ prompt: 'q3', response: 'a3', history: [['q1', 'a1'], ['q2', 'a2']] }]));
    expect(glm.format).toBe('prompt_response');
    expect(chat(glm.samples[0]).messages.map((m) => `${m.role}:${m.content}`)).toEqual([
      'user:q1', 'assistant:a1', 'user:q2', 'assistant:a2', 'user:q3', 'assistant:a3',
    ]);
  });

  it('promptColumn/responseColumn override detection', async () => {
    const path = write('custom.json', [{ question: 'Q', answer: 'A', instruction: 'ignored' }]);
    const r = await loadSftSamples(path, { promptColumn: 'question', responseColumn: 'answer' });
    expect(r.format).toBe('columns');
    expect(chat(r.samples[0]).messages).toEqual([
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: 'A' },
    ]);
    // Only one column given: the other defaults to the detected format's (alpaca: output).
    const half = await loadSftSamples(write('half.json', [{ question: 'Q', output: 'O', instruction: 'I' }]), { promptColumn: 'question' });
    expect(chat(half.samples[0]).messages.map((m) => m.content)).toEqual(['Q', 'O']);
  });

  it('OpenAI-style messages and a record-level system prompt', async () => {
    const r = await loadSftSamples(write('msgs.jsonl', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] })));
    expect(r.format).toBe('messages');
    const sys = await loadSftSamples(write('sys.json', [{ system: 'Be brief.', conversations: [{ from: 'human', value: 'hi' }, { from: 'gpt', value: 'yo' }] }]));
    expect(chat(sys.samples[0]).messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
  });
});

describe('records lacking the needed fields', () => {
  it('a record without output names the file, the index and the field', async () => {
    const path = write('no-output.json', [{ instruction: 'a', output: 'b' }, { instruction: 'c', input: '' }]);
    await expect(loadSftSamples(path)).rejects.toThrow(`${path}[1]: missing field "output"`);
    const r = await loadSftSamples(path, { skipBadRecords: true });
    expect(r.samples).toHaveLength(1);
    expect(r.skipped).toBe(1);
    expect(r.skippedExamples[0]).toBe(`${path}[1]: missing field "output"`);
  });

  it('JSONL errors name the line; nested fields name their path', async () => {
    const si = write('si.jsonl', '{"instruction": "x", "instances": [{"input": "", "output": "y"}]}\n{"instruction": "x", "instances": [{"input": "i"}]}\n');
    await expect(loadSftSamples(si)).rejects.toThrow(`${si}:2: missing field "instances[0].output"`);
    const conv = write('conv.json', [{ conversations: [{ from: 'human', value: 'q' }, { from: 'robot', value: 'a' }] }]);
    await expect(loadSftSamples(conv)).rejects.toThrow(`${conv}[0]: field "conversations[1].from" is "robot"; expected one of`);
    const noReply = write('noreply.json', [{ conversations: [{ from: 'human', value: 'q' }] }]);
    await expect(loadSftSamples(noReply)).rejects.toThrow(/\[0\]: field "conversations" has no assistant turn/);
    const wrongType = write('wrongtype.json', [{ instruction: 'q', output: 42 }]);
    await expect(loadSftSamples(wrongType)).rejects.toThrow(`${wrongType}[0]: field "output" must be a string, got number`);
  });

  it('an unrecognized or preference dataset says what to do', async () => {
    await expect(loadSftSamples(write('odd.json', [{ foo: 1, bar: 2 }]))).rejects.toThrow(/cannot tell the dataset format from its fields \(foo, bar\)/);
    await expect(loadSftSamples(`${DS}/preference/dpo_en_demo.json`)).rejects.toThrow(/preference dataset.*not SFT data: train a reward model on it \(train_reward_model --dataset FILE\)/);
  });
});

describe('empty responses', () => {
  it.each([
    ['alpaca', [{ instruction: 'a', output: 'b' }, { instruction: 'c', output: '  ' }], /\[1\]: field "output" is empty: the response has nothing to train on/],
    ['self_instruct', [{ instruction: 'a', instances: [{ input: '', output: '' }] }], /\[0\]: field "instances\[0\]\.output" is empty/],
    ['prompt_response', [{ prompt: 'a', response: '' }], /\[0\]: field "response" is empty/],
    ['messages', [{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: '' }] }], /\[0\]: field "messages\[1\]\.content" is empty: the last assistant reply/],
    ['conversations', [{ conversations: [{ from: 'human', value: 'a' }, { from: 'gpt', value: '\n' }] }], /\[0\]: field "conversations\[1\]\.value" is empty/],
  ])('%s: an empty reply is reported as such, and --skip_bad_records skips it', async (name, records, message) => {
    const file = write(`empty-${name}.json`, records);
    await expect(loadSftSamples(file)).rejects.toThrow(message);
    if (records.length > 1) {
      const r = await loadSftSamples(file, { skipBadRecords: true });
      expect([r.samples.length, r.skipped]).toEqual([1, 1]);
    }
  });

  it('names the flags, not internal options, when columns are needed', async () => {
    await expect(loadSftSamples(write('cols.json', [{ messages: [] }]), { promptColumn: 'q' })).rejects.toThrow(/pass both --prompt_column and --response_column/);
  });
});
