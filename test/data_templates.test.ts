import { describe, expect, it } from 'vitest';
import {
  getTemplate,
  joinSegments,
  loadSftSamples,
  renderSample,
  TEMPLATE_NAMES,
  type ChatMessage,
  type ChatSample,
} from '../src/data/index.js';

const u = (content: string): ChatMessage => ({ role: 'user', content });
const a = (content: string): ChatMessage => ({ role: 'assistant', content });
const s = (content: string): ChatMessage => ({ role: 'system', content });

describe('alpaca (ColossalChat / Stanford Alpaca PROMPT_DICT wording)', () => {
  const t = getTemplate('alpaca');
  it('without input', () => {
    expect(t.render([u('Name a color.'), a('Blue.')])).toEqual([
      {
        text:
          'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
          '### Instruction:\nName a color.\n\n### Response:',
        train: false,
      },
      { text: 'Blue.', train: true },
    ]);
  });

  it('with input: the "paired with an input" header and an ### Input block', () => {
    const prompt = t.renderPrompt([u('Translate.\nBonjour')], { alpaca: { instruction: 'Translate.', input: 'Bonjour' } });
    expect(prompt).toBe(
      'Below is an instruction that describes a task, paired with an input that provides further context. ' +
        'Write a response that appropriately completes the request.\n\n' +
        '### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:',
    );
  });

  it('a real alpaca record with input renders with the input wording through renderSample', async () => {
    const { samples } = await loadSftSamples('datasets/sft/alpaca_en_demo.json');
    const sample = (samples as ChatSample[]).find((x) => x.alpaca?.input)!;
    const segs = renderSample(t, sample);
    expect(segs[0]!.text).toContain(`### Input:\n${sample.alpaca!.input}\n\n### Response:`);
    expect(segs[0]!.text.startsWith('Below is an instruction that describes a task, paired with an input')).toBe(true);
    expect(segs[1]).toEqual({ text: sample.messages[1]!.content, train: true });
  });

  it('multi-turn and system: the system text replaces the header, blocks repeat', () => {
    expect(joinSegments(t.render([s('SYS'), u('q1'), a('a1'), u('q2'), a('a2')]))).toBe(
      'SYS\n\n### Instruction:\nq1\n\n### Response:a1\n\n### Instruction:\nq2\n\n### Response:a2',
    );
  });
});

describe('chatml', () => {
  const t = getTemplate('chatml');
  it('segments: im_end after a reply is trained, the next turn is not', () => {
    expect(t.render([s('S'), u('hi'), a('yo'), u('again'), a('ok')])).toEqual([
      { text: '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', train: false },
      { text: 'yo<|im_end|>', train: true },
      { text: '\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n', train: false },
      { text: 'ok<|im_end|>', train: true },
    ]);
  });
  it('generation prompt', () => {
    expect(t.renderPrompt([u('hi')])).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    expect(t.stop).toContain('<|im_end|>');
  });
});

describe('human_assistant (hh-rlhf)', () => {
  const t = getTemplate('human_assistant');
  it('renders exactly the hh-rlhf text', () => {
    expect(t.render([u('q1'), a('a1'), u('q2'), a('a2')])).toEqual([
      { text: '\n\nHuman: q1\n\nAssistant:', train: false },
      { text: ' a1', train: true },
      { text: '\n\nHuman: q2\n\nAssistant:', train: false },
      { text: ' a2', train: true },
    ]);
    expect(t.renderPrompt([u('q1')])).toBe('\n\nHuman: q1\n\nAssistant:');
  });
});

describe('plain', () => {
  const t = getTemplate('plain');
  it('joins turns with newlines, no decoration', () => {
    expect(t.render([u('q1'), a('a1'), u('q2'), a('a2')])).toEqual([
      { text: 'q1\n', train: false },
      { text: 'a1', train: true },
      { text: '\nq2\n', train: false },
      { text: 'a2', train: true },
    ]);
    expect(t.renderPrompt([s('S'), u('q')])).toBe('S\nq\n');
  });
});

describe('zh_dialogue', () => {
  const t = getTemplate('zh_dialogue');
  it('keeps the last 3 earlier exchanges, then the current turn', () => {
    const messages = [u('问1'), a('答1'), u('问2'), a('答2'), u('问3'), a('答3'), u('问4'), a('答4'), u('问5')];
    expect(t.renderPrompt(messages)).toBe(
      '输入:问2\n输出:答2</s>输入:问3\n输出:答3</s>输入:问4\n输出:答4</s>当前输入:问5\n当前输出:',
    );
  });
  it('retrieved passages come first as 检索知识 lines; earlier replies and their </s> are trained', () => {
    const segs = t.render([u('你好'), a('你好！'), u('天气如何'), a('晴天')], { knowledge: ['今天晴', '气温20度'] });
    expect(segs).toEqual([
      { text: '检索知识:今天晴\n检索知识:气温20度\n输入:你好\n输出:', train: false },
      { text: '你好！</s>', train: true },
      { text: '当前输入:天气如何\n当前输出:', train: false },
      { text: '晴天', train: true },
    ]);
    expect(t.renderPrompt([u('天气如何')], { knowledge: ['今天晴'] })).toBe('检索知识:今天晴\n当前输入:天气如何\n当前输出:');
  });
});

describe('every template', () => {
  const conversation = [s('sys'), u('q1'), a('a1'), u('q2'), a('a2')];
  it.each(TEMPLATE_NAMES)('%s: the generation prompt is a prefix of the training text, the reply follows it', (name) => {
    const t = getTemplate(name);
    const full = joinSegments(t.render(conversation));
    const prompt = t.renderPrompt(conversation.slice(0, -1));
    expect(full.startsWith(prompt)).toBe(true);
    expect(full.slice(prompt.length)).toContain('a2');
    // Only assistant text (plus its markers) is trained.
    const trained = t.render(conversation).filter((x) => x.train).map((x) => x.text).join('|');
    expect(trained).not.toContain('q1');
    expect(trained).not.toContain('q2');
  });

  it.each(TEMPLATE_NAMES)('%s: rejects a wrong ending or a misplaced system message', (name) => {
    const t = getTemplate(name);
    expect(() => t.render([u('q')])).toThrow(/must end with an assistant message/);
    expect(() => t.renderPrompt([u('q'), a('x')])).toThrow(/must end with a user message/);
    expect(() => t.renderPrompt([u('q'), s('late'), u('q')])).toThrow(/only the first message may be one/);
  });

  it('an unknown name lists the known ones', () => {
    expect(() => getTemplate('vicuna')).toThrow('Unknown prompt template "vicuna"; available: alpaca, chatml, human_assistant, plain, zh_dialogue');
  });
});
