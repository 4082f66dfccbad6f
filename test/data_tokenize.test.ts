import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import {
  cachedTokenArrays,
  getTemplate,
  IGNORE_INDEX,
  joinSegments,
  loadPackedText,
  loadSftSamples,
  packBlocks,
  packTexts,
  splitTrainVal,
  tokenCacheKey,
  tokenizeChatSamples,
  tokenizeSegments,
  type ChatSample,
  type TextEncoderLike,
} from '../src/data/index.js';

/** One token per character (its code point); BOS 1, EOS 2; counts encode calls. */
class CharEncoder implements TextEncoderLike {
  calls = 0;
  constructor(
    public bosTokenId: number | null = 1,
    public eosTokenId: number | null = 2,
  ) {}
  encode(text: string): number[] {
    this.calls++;
    return [...text].map((c) => c.codePointAt(0)!);
  }
}
const codes = (s: string): number[] => [...s].map((c) => c.codePointAt(0)!);
const M = IGNORE_INDEX;

describe('tokenizeSegments', () => {
  const segs = [
    { text: 'ab', train: false },
    { text: 'C', train: true },
    { text: 'd', train: false },
    { text: 'EF', train: true },
  ];

  it('labels -100 on untrained tokens, EOS (trained) right after the last trained segment, optional BOS', () => {
    const { sample, truncated } = tokenizeSegments(segs, new CharEncoder(), { maxLen: 100, addBos: true });
    expect(truncated).toBe(false);
    expect(sample.inputIds).toEqual([1, ...codes('abCdEF'), 2]);
    expect(sample.labels).toEqual([M, M, M, ...codes('C'), M, ...codes('EF'), 2]);
    const noBos = tokenizeSegments(segs, new CharEncoder(null, 2), { maxLen: 100, addBos: true }).sample;
    expect(noBos.inputIds[0]).toBe(codes('a')[0]);
  });

  it('no second EOS when the template marker already encodes to EOS', () => {
    const enc = new CharEncoder(null, codes('$')[0]!);
    const { sample } = tokenizeSegments([{ text: 'q', train: false }, { text: 'A$', train: true }], enc, { maxLen: 10 });
    expect(sample.inputIds).toEqual(codes('qA$'));
  });

  it('truncates to maxLen from the right (default) or the left, and reports it', () => {
    const right = tokenizeSegments(segs, new CharEncoder(), { maxLen: 4, addBos: true });
    expect(right.truncated).toBe(true);
    expect(right.sample.inputIds).toEqual([1, ...codes('abC')]);
    const left = tokenizeSegments(segs, new CharEncoder(), { maxLen: 4, addBos: true, truncate: 'left' });
    expect(left.sample.inputIds).toEqual([1, ...codes('EF'), 2]);
    expect(left.sample.labels).toEqual([M, ...codes('EF'), 2]);
  });
});

describe('tokenizeChatSamples', () => {
  it('counts truncations and drops samples left without a trained token', () => {
    const t = getTemplate('plain');
    const samples: ChatSample[] = [
      { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] }, // "hi\nyo" + EOS = 6
      { messages: [{ role: 'user', content: 'a long question' }, { role: 'assistant', content: 'x' }] },
      { messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a much longer answer' }] },
    ];
    const { samples: out, stats } = tokenizeChatSamples(samples, t, new CharEncoder(), { maxLen: 8 });
    expect(stats).toEqual({ samples: 2, truncated: 2, droppedNoTarget: 1, tokens: 6 + 8 });
    expect(out[0]!.labels).toEqual([M, M, M, ...codes('yo'), 2]);
    expect(out[1]!.inputIds).toHaveLength(8);
  });

  it('template errors name the sample location', () => {
    const bad: ChatSample = { messages: [{ role: 'user', content: 'q' }], location: { file: 'f.json', index: 3 } };
    expect(() => tokenizeChatSamples([bad], getTemplate('chatml'), new CharEncoder(), { maxLen: 8 })).toThrow(
      'f.json[3]: template "chatml": a conversation to train on must end with an assistant message',
    );
  });

  it('with the real GPT-2 tokenizer, ids decode to the rendered text + EOS and labels to the reply + EOS', async () => {
    const tok = new Tokenizer(JSON.parse(readFileSync('test/fixtures/tokenizers/gpt2/tokenizer.json', 'utf8')), {});
    const encoder: TextEncoderLike = {
      encode: (text, opts) => tok.encode(text, { add_special_tokens: opts?.addSpecialTokens ?? false }).ids,
      bosTokenId: 50256,
      eosTokenId: 50256,
    };
    const { samples } = await loadSftSamples('datasets/sft/alpaca_en_demo.json', { maxRecords: 5 });
    const t = getTemplate('alpaca');
    const { samples: out, stats } = tokenizeChatSamples(samples as ChatSample[], t, encoder, { maxLen: 1024 });
    expect(stats.samples).toBe(5);
    const first = samples[0] as ChatSample;
    const rendered = joinSegments(t.render(first.messages, { alpaca: first.alpaca }));
    expect(tok.decode(out[0]!.inputIds)).toBe(rendered + '<|endoftext|>');
    expect(tok.decode(out[0]!.labels.filter((l) => l !== M))).toBe(first.messages[1]!.content + '<|endoftext|>');
  });
});

describe('packing plain text', () => {
  it('documents joined by EOS, cut into full blocks, labels = inputIds (the model shifts)', () => {
    const { samples, tokens, droppedTailTokens } = packTexts(['abc', 'de', 'fghij'], new CharEncoder(), 4);
    expect(tokens).toBe(13); // 10 chars + 3 EOS
    expect(samples.map((s) => s.inputIds)).toEqual([codes('abc').concat(2), codes('de').concat(2, codes('f')[0]!), codes('ghij')]);
    expect(samples[1]!.labels).toEqual(samples[1]!.inputIds);
    expect(droppedTailTokens).toBe(1);
    expect(packBlocks([1, 2, 3], 2).blocks).toEqual([[1, 2]]);
    expect(() => packTexts(['ab'], new CharEncoder(), 8)).toThrow(/fewer than one block of 8/);
  });
});

describe('token cache', () => {
  it('a second call returns the cached blocks without encoding; changing an option rebuilds', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'tok-cache-'));
    const files = ['datasets/pretrain/tangshi300.json'];
    const enc = new CharEncoder();
    const first = await loadPackedText({ files, encoder: enc, blockSize: 64, cacheDir, tokenizer: '{"fake": "char"}' });
    expect(first.fromCache).toBe(false);
    const callsAfterFirst = enc.calls;
    expect(callsAfterFirst).toBe(366);
    const second = await loadPackedText({ files, encoder: enc, blockSize: 64, cacheDir, tokenizer: '{"fake": "char"}' });
    expect(second.fromCache).toBe(true);
    expect(enc.calls).toBe(callsAfterFirst);
    expect(second.samples).toEqual(first.samples);
    // Every id (a code point here) is below 65,536, so the .bin holds Uint16: 2 bytes per token.
    const bin = readdirSync(cacheDir).find((n) => n.endsWith('.bin'))!;
    expect(statSync(join(cacheDir, bin)).size).toBe(first.samples.length * 64 * 2);
    const other = await loadPackedText({ files, encoder: enc, blockSize: 32, cacheDir, tokenizer: '{"fake": "char"}' });
    expect(other.fromCache).toBe(false);
    expect(enc.calls).toBe(callsAfterFirst * 2);
    const otherTok = await loadPackedText({ files, encoder: enc, blockSize: 64, cacheDir, tokenizer: '{"fake": "other"}' });
    expect(otherTok.fromCache).toBe(false);
  });

  it('stores ids of 65,536 and above as Uint32, and arrays of different lengths', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'tok-cache32-'));
    const key = tokenCacheKey({ dataFiles: ['datasets/sft/belle-dev1K.json'], tokenizer: 't', options: { a: 1 } });
    const arrays = [[0, 70000, 5], [151643], []];
    const built = await cachedTokenArrays({ cacheDir, key, build: () => arrays, vocabSize: 151936 });
    expect(built.fromCache).toBe(false);
    let rebuilt = false;
    const cached = await cachedTokenArrays({ cacheDir, key, build: () => ((rebuilt = true), []) });
    expect(rebuilt).toBe(false);
    expect(cached.arrays).toEqual(arrays);
    expect(statSync(join(cacheDir, `${key}.bin`)).size).toBe(4 * 4);
    expect(JSON.parse(readFileSync(join(cacheDir, `${key}.json`), 'utf8')).dtype).toBe('uint32');
  });

  it('the key depends on file contents and options, not on option order', () => {
    const base = { dataFiles: ['datasets/sft/belle-dev1K.json'], tokenizer: 't' };
    expect(tokenCacheKey({ ...base, options: { a: 1, b: 2 } })).toBe(tokenCacheKey({ ...base, options: { b: 2, a: 1 } }));
    expect(tokenCacheKey({ ...base, options: { a: 1 } })).not.toBe(tokenCacheKey({ ...base, options: { a: 2 } }));
    expect(tokenCacheKey({ ...base, options: {} })).not.toBe(
      tokenCacheKey({ ...base, dataFiles: ['datasets/sft/alpaca_zh_demo.json'], options: {} }),
    );
  });
});

describe('splitTrainVal', () => {
  it('splits by ratio with a seed, reproducibly, keeping order within each part', () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const a = splitTrainVal(items, 0.1, 7);
    expect(a.val).toHaveLength(10);
    expect(a.train).toHaveLength(90);
    expect([...a.train, ...a.val].sort((x, y) => x - y)).toEqual(items);
    expect(a.val).toEqual([...a.val].sort((x, y) => x - y));
    expect(splitTrainVal(items, 0.1, 7)).toEqual(a);
    expect(splitTrainVal(items, 0.1, 8).val).not.toEqual(a.val);
    expect(splitTrainVal([1, 2], 0.01, 0).val).toHaveLength(1);
    expect(splitTrainVal(items, 0, 0).val).toHaveLength(0);
    expect(() => splitTrainVal(items, 1, 0)).toThrow(/valRatio/);
  });
});
