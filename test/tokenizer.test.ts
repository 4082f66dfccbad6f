// Tokenizer against transformers' own outputs (test/fixtures), plus GPT-2 files, the char tokenizer, batching, save.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer, parseMerges } from '../src/hub/tokenizer.js';
import { buildCharTokenizerJson } from '../src/hub/char_tokenizer.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const HF = path.join(FIXTURES, 'hf');
const REAL = path.join(FIXTURES, 'tokenizers');

interface Probe {
  text: string;
  ids: number[];
  ids_no_special: number[];
  decoded: string;
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

const realExpected = readJson<Record<'gpt2' | 'minimind', Probe[]>>(path.join(FIXTURES, 'tokenizers_expected.json'));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'tokenizer-test-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// The fixtures' `decoded` is HF's decode(ids_no_special) (make_fixtures.py); for the tiny checkpoints it also equals
// decode(ids, skip_special_tokens) here, which checks that skipping drops bos/eos but keeps byte-fallback pieces.
describe.each(['gpt2', 'opt', 'bloom', 'llama', 'qwen2', 'qwen3', 'mistral', 'gpt_neox', 'llama3', 'phi3', 'gemma2'])('hf fixture %s', (arch) => {
  const expected = readJson<{ vocab_size: number; encode: Probe[] }>(path.join(HF, arch, 'expected.json'));

  it('encodes and decodes every probe as transformers does', async () => {
    const tok = await Tokenizer.fromDir(path.join(HF, arch));
    expect(tok.vocabSize).toBe(expected.vocab_size);
    for (const probe of expected.encode) {
      expect(tok.encode(probe.text), probe.text).toEqual(probe.ids);
      expect(tok.encode(probe.text, { addSpecialTokens: false }), probe.text).toEqual(probe.ids_no_special);
      expect(tok.decode(probe.ids_no_special), probe.text).toBe(probe.decoded);
      expect(tok.decode(probe.ids, { skipSpecialTokens: true }), probe.text).toBe(probe.decoded);
    }
  });
});

describe.each(['gpt2', 'minimind'] as const)('real tokenizer %s', (name) => {
  it('matches transformers on all 29 probes (ids, ids without specials, decode)', async () => {
    const tok = await Tokenizer.fromDir(path.join(REAL, name));
    const probes = realExpected[name];
    expect(probes).toHaveLength(29);
    for (const probe of probes) {
      expect(tok.encode(probe.text), probe.text).toEqual(probe.ids);
      expect(tok.encode(probe.text, { addSpecialTokens: false }), probe.text).toEqual(probe.ids_no_special);
      expect(tok.decode(probe.ids_no_special), probe.text).toBe(probe.decoded);
    }
  });
});

describe('special tokens', () => {
  it('reads ids from tokenizer_config.json', async () => {
    const opt = await Tokenizer.fromDir(path.join(HF, 'opt'));
    expect([opt.bosTokenId, opt.eosTokenId, opt.padTokenId, opt.unkTokenId]).toEqual([1, 1, 0, 3]);
    expect(opt.idToToken(1)).toBe('</s>');
    expect(opt.tokenToId('<pad>')).toBe(0);
    expect(opt.tokenToId('no such token')).toBeNull();

    const minimind = await Tokenizer.fromDir(path.join(REAL, 'minimind'));
    expect([minimind.bosTokenId, minimind.eosTokenId, minimind.padTokenId]).toEqual([1, 2, 0]);
    expect(minimind.chatTemplate).toContain('<|im_start|>');
    expect(minimind.modelMaxLength).toBe(131072);
  });

  it('skips bos/eos/unk but not byte-fallback pieces flagged special (llama fixture)', async () => {
    const llama = await Tokenizer.fromDir(path.join(HF, 'llama'));
    expect([...llama.specialTokenIds].sort((a, b) => a - b)).toEqual([0, 1, 2]);
    expect(llama.padTokenId).toBe(2);
    expect(llama.decode([1, 13], { skipSpecialTokens: true })).toBe('\n'); // 13 = <0x0A>
  });

  it('without a config, GPT-2 takes <|endoftext|> as bos/eos and pads with it', async () => {
    const gpt2 = await Tokenizer.fromDir(path.join(REAL, 'gpt2'));
    expect([gpt2.bosTokenId, gpt2.eosTokenId, gpt2.padTokenId, gpt2.unkTokenId]).toEqual([50256, 50256, 50256, null]);
    expect(gpt2.modelMaxLength).toBeNull();
    expect(gpt2.decode([15496, 50256], { skipSpecialTokens: true })).toBe('Hello');
  });

  it('accepts {content} objects, special_tokens_map.json and chat_template.jinja', async () => {
    const dir = path.join(tmp, 'objects');
    await mkdir(dir, { recursive: true });
    await copyFile(path.join(HF, 'opt', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const config = { eos_token: { content: '</s>', lstrip: false, __type: 'AddedToken' }, padding_side: 'left' };
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    await writeFile(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ pad_token: { content: '<unk>' } }));
    await writeFile(path.join(dir, 'chat_template.jinja'), '{{ messages }}');
    const tok = await Tokenizer.fromDir(dir);
    expect(tok.eosTokenId).toBe(1);
    expect(tok.padTokenId).toBe(3);
    expect(tok.paddingSide).toBe('left');
    expect(tok.chatTemplate).toBe('{{ messages }}');
  });

  it('add_bos_token / add_eos_token decide what addSpecialTokens adds', async () => {
    const json = readJson<object>(path.join(HF, 'llama', 'tokenizer.json'));
    const base = readJson<Record<string, unknown>>(path.join(HF, 'llama', 'tokenizer_config.json'));
    const plain = Tokenizer.fromJson(json, base).encode('Hello', { addSpecialTokens: false });
    const both = Tokenizer.fromJson(json, { ...base, add_bos_token: true, add_eos_token: true });
    expect(both.encode('Hello')).toEqual([1, ...plain, 2]);
    const none = Tokenizer.fromJson(json, { ...base, add_bos_token: false });
    expect(none.encode('Hello')).toEqual(plain);
  });

  it('names the file and field of a bad config value', () => {
    const json = readJson<object>(path.join(HF, 'gpt2', 'tokenizer.json'));
    expect(() => Tokenizer.fromJson(json, { padding_side: 'middle' }, '/x/tokenizer.json')).toThrow(
      /\/x\/tokenizer_config\.json: field "padding_side" must be "left" or "right"/,
    );
    expect(() => Tokenizer.fromJson(json, { eos_token: 7 })).toThrow(/field "eos_token"/);
    expect(() => Tokenizer.fromJson({ version: '1.0' })).toThrow(/field "model" must be an object/);
  });
});

describe('decode edge cases', () => {
  it('returns "" for no ids, drops ids past the vocabulary, rejects non-integers', async () => {
    const tok = await Tokenizer.fromDir(path.join(HF, 'gpt2'));
    expect(tok.decode([])).toBe('');
    expect(tok.decode([0], { skipSpecialTokens: true })).toBe('');
    expect(tok.decode([40, 597, 600, 5000, -1])).toBe(tok.decode([40, 597]));
    expect(() => tok.decode([1.5])).toThrow(/ids\[0\] = 1.5/);
  });
});

describe('batchEncode', () => {
  it('pads right by default and left on request, with the pad id and a 0 mask', async () => {
    const opt = await Tokenizer.fromDir(path.join(HF, 'opt'));
    const short = opt.encode('Hi');
    const long = opt.encode('Hello world!');
    const gap = long.length - short.length;
    const right = opt.batchEncode(['Hi', 'Hello world!']);
    expect(right.inputIds).toEqual([[...short, ...Array(gap).fill(0)], long]);
    expect(right.attentionMask[0]).toEqual([...Array(short.length).fill(1), ...Array(gap).fill(0)]);
    expect(right.attentionMask[1]).toEqual(Array(long.length).fill(1));
    const left = opt.batchEncode(['Hi', 'Hello world!'], { paddingSide: 'left' });
    expect(left.inputIds[0]).toEqual([...Array(gap).fill(0), ...short]);
    expect(left.attentionMask[0]).toEqual([...Array(gap).fill(0), ...Array(short.length).fill(1)]);
  });

  it('truncates the text but keeps the special tokens, and pads to max_length', async () => {
    const opt = await Tokenizer.fromDir(path.join(HF, 'opt'));
    const text = 'The quick brown fox jumps over the lazy dog.';
    const body = opt.encode(text, { addSpecialTokens: false });
    const batch = opt.batchEncode([text, 'Hi'], { maxLength: 5, padding: 'max_length' });
    expect(batch.inputIds[0]).toEqual([1, ...body.slice(0, 4)]); // OPT's leading </s> survives
    expect(batch.inputIds[1]).toHaveLength(5);
    expect(batch.attentionMask[1].filter((m) => m === 1)).toHaveLength(opt.encode('Hi').length);
    const untruncated = opt.batchEncode([text], { maxLength: 5, truncation: false });
    expect(untruncated.inputIds[0]).toHaveLength(body.length + 1);
  });

  it('uses the config padding side and pads with eos when there is no pad token', async () => {
    const json = readJson<object>(path.join(HF, 'opt', 'tokenizer.json'));
    const tok = Tokenizer.fromJson(json, { eos_token: '</s>', padding_side: 'left' });
    expect(tok.padTokenId).toBe(1);
    expect(tok.batchEncode(['Hi', 'Hello world!'], { addSpecialTokens: false }).inputIds[0][0]).toBe(1);
    const noEos = Tokenizer.fromJson(json, {});
    expect(() => noEos.batchEncode(['Hi', 'Hello world!'])).toThrow(/no pad_token and no eos_token/);
  });
});

describe('GPT-2 vocab.json + merges.txt', () => {
  const encoder = path.join(REAL, 'gpt2', 'encoder.json');
  const bpe = path.join(REAL, 'gpt2', 'vocab.bpe');

  it('builds a tokenizer that encodes like the real GPT-2 tokenizer.json', async () => {
    const tok = await Tokenizer.fromGpt2Files(encoder, bpe);
    expect(tok.vocabSize).toBe(50257);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([50256, 50256, 50256]);
    for (const probe of realExpected.gpt2) {
      expect(tok.encode(probe.text), probe.text).toEqual(probe.ids);
      expect(tok.encode(probe.text, { addSpecialTokens: false }), probe.text).toEqual(probe.ids_no_special);
      expect(tok.decode(probe.ids), probe.text).toBe(probe.decoded);
    }
  });

  it('is what fromDir loads from a directory without tokenizer.json', async () => {
    const dir = path.join(tmp, 'gpt2-files');
    await mkdir(dir, { recursive: true });
    await copyFile(encoder, path.join(dir, 'vocab.json'));
    await copyFile(bpe, path.join(dir, 'merges.txt'));
    const tok = await Tokenizer.fromDir(dir);
    expect(tok.encode("I'm you're they'll we've")).toEqual(realExpected.gpt2[3].ids);
  });

  it('reports a malformed merge with its file and line', () => {
    expect(parseMerges('#version: 0.2\nĠ t\r\nh e\n', 'merges.txt')).toEqual([['Ġ', 't'], ['h', 'e']]);
    expect(() => parseMerges('#version: 0.2\nĠ t\nbad\n', 'merges.txt')).toThrow(/^merges\.txt:3: /);
  });

  it('errors clearly on a directory with no tokenizer files', async () => {
    const dir = path.join(tmp, 'empty');
    await mkdir(dir, { recursive: true });
    await expect(Tokenizer.fromDir(dir)).rejects.toThrow(`No tokenizer in ${dir}`);
    await writeFile(path.join(dir, 'tokenizer.json'), '{ nope');
    await expect(Tokenizer.fromDir(dir)).rejects.toThrow(/tokenizer\.json: invalid JSON/);
  });
});

describe('character tokenizer', () => {
  // The slice of tinyshakespeare that ships in the repo (datasets/README.md gives its source), so any clone runs this.
  const shakespeareFile = fileURLToPath(new URL('../datasets/pretrain/tinyshakespeare.txt', import.meta.url));
  const shakespeare = readFileSync(shakespeareFile, 'utf8').slice(0, 2000);
  const chinese = '床前明月光,\n疑是地上霜。  举头望明月, 低头思故乡。\n你好 🤗';

  // No clean-up of spaces before punctuation on decode (HF's clean_up_tokenization_spaces defaults to false).
  const spaced = "spaced out , as in ' don 't ' .";

  it('round-trips Shakespeare and Chinese text one character per token', () => {
    const corpus = shakespeare + chinese + spaced;
    const tok = Tokenizer.fromJson(buildCharTokenizerJson(corpus));
    const chars = [...new Set(Array.from(corpus))];
    expect(tok.vocabSize).toBe(chars.length + 2);
    for (const text of [shakespeare, chinese, spaced]) {
      const ids = tok.encode(text);
      expect(ids).toHaveLength(Array.from(text).length);
      expect(tok.decode(ids)).toBe(text);
    }
    expect(tok.encode('\n')).toEqual([0]); // sorted by code point: '\n' is the smallest here
    expect(tok.tokenToId('a')).toBeLessThan(tok.tokenToId('b') as number);
  });

  it('maps unknown characters to <unk> and recognises <|endoftext|> as eos', () => {
    const tok = Tokenizer.fromJson(buildCharTokenizerJson('ab c\n'));
    const unk = tok.tokenToId('<unk>');
    const eos = tok.tokenToId('<|endoftext|>');
    expect([unk, eos]).toEqual([5, 6]);
    expect([tok.unkTokenId, tok.eosTokenId, tok.bosTokenId]).toEqual([5, 6, 6]);
    expect(tok.encode('abz<|endoftext|>')).toEqual([2, 3, 5, 6]); // '\n' 0, ' ' 1, 'a' 2, 'b' 3, 'c' 4
    expect(tok.decode([2, 6, 3], { skipSpecialTokens: true })).toBe('ab');
    expect(() => buildCharTokenizerJson('ab', { unkToken: 'a' })).toThrow(/also a corpus character/);
  });

  it('saves and loads back through a directory', async () => {
    const dir = path.join(tmp, 'char');
    const tok = Tokenizer.fromJson(buildCharTokenizerJson(chinese));
    await tok.save(dir);
    const again = await Tokenizer.fromDir(dir);
    expect(again.encode(chinese)).toEqual(tok.encode(chinese));
    expect(again.decode(again.encode(chinese))).toBe(chinese);
    expect(again.eosTokenId).toBe(tok.eosTokenId);
  });
});

describe('save', () => {
  it('writes the tokenizer.json it read, a config with the special tokens, and loads back identically', async () => {
    const dir = path.join(tmp, 'saved-minimind');
    const tok = await Tokenizer.fromDir(path.join(REAL, 'minimind'));
    await tok.save(dir);
    const original = JSON.parse(await readFile(path.join(REAL, 'minimind', 'tokenizer.json'), 'utf8'));
    expect(JSON.parse(await readFile(path.join(dir, 'tokenizer.json'), 'utf8'))).toEqual(original);
    const config = JSON.parse(await readFile(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(config).toMatchObject({ bos_token: '<|im_start|>', eos_token: '<|im_end|>', pad_token: '<|endoftext|>' });
    expect(config.chat_template).toBe(tok.chatTemplate);
    const map = JSON.parse(await readFile(path.join(dir, 'special_tokens_map.json'), 'utf8'));
    expect(map.additional_special_tokens).toHaveLength(20);
    const again = await Tokenizer.fromDir(dir);
    for (const probe of realExpected.minimind) expect(again.encode(probe.text)).toEqual(probe.ids);
  });

  it('writes the eos fallback as pad_token and drops HF\'s "no limit" model_max_length', async () => {
    const dir = path.join(tmp, 'saved-gpt2');
    await (await Tokenizer.fromDir(path.join(HF, 'gpt2'))).save(path.join(tmp, 'saved-gpt2-fixture'));
    const fixtureConfigFile = path.join(tmp, 'saved-gpt2-fixture', 'tokenizer_config.json');
    const fixtureConfig = JSON.parse(await readFile(fixtureConfigFile, 'utf8'));
    expect(fixtureConfig.model_max_length).toBeUndefined(); // the fixture has int(1e30)
    await (await Tokenizer.fromDir(path.join(REAL, 'gpt2'))).save(dir);
    const config = JSON.parse(await readFile(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(config).toMatchObject({
      tokenizer_class: 'PreTrainedTokenizerFast',
      eos_token: '<|endoftext|>',
      pad_token: '<|endoftext|>',
      padding_side: 'right',
    });
  });
});

describe('tokenizer.json schema', () => {
  // A small BPE file with real merges: "a b" -> "ab", "ab c" -> "abc".
  const bpe = () => ({
    model: { type: 'BPE', unk_token: '<unk>', vocab: { '<unk>': 0, a: 1, b: 2, c: 3, ab: 4, abc: 5 } as Record<string, unknown>, merges: ['a b', 'ab c'] as unknown[] },
    added_tokens: [{ id: 0, content: '<unk>', special: true }] as unknown[],
    normalizer: null, pre_tokenizer: null, post_processor: null, decoder: { type: 'Fuse' } as unknown,
  });

  it('accepts a well-formed BPE file and uses its merges', () => {
    const tok = Tokenizer.fromJson(bpe(), {}, 'x/tokenizer.json');
    expect(tok.encode('abc')).toEqual([5]);
  });

  it.each([
    ['an unknown model type', (j: ReturnType<typeof bpe>) => { (j.model as Record<string, unknown>).type = 'Mamba'; }, /field "model.type" is "Mamba": not a known tokenizer model \(supported: BPE, WordPiece, Unigram, WordLevel\)/],
    ['a merge of a token not in the vocabulary', (j: ReturnType<typeof bpe>) => { j.model.merges[1] = 'ab z'; }, /field "model.merges\[1\]" merges "z", which is not in model.vocab/],
    ['a merge whose result is not in the vocabulary', (j: ReturnType<typeof bpe>) => { j.model.merges[0] = 'b c'; }, /field "model.merges\[0\]" makes "bc", which is not in model.vocab/],
    ['a merge that is not two tokens', (j: ReturnType<typeof bpe>) => { j.model.merges[0] = 'abc'; }, /field "model.merges\[0\]" must be two non-empty tokens/],
    ['merges of mixed forms', (j: ReturnType<typeof bpe>) => { j.model.merges[1] = ['ab', 'c']; }, /field "model.merges\[1\]" must be a "left right" string/],
    ['missing merges', (j: ReturnType<typeof bpe>) => { delete (j.model as Record<string, unknown>).merges; }, /field "model.merges" is missing/],
    ['a fractional id', (j: ReturnType<typeof bpe>) => { j.model.vocab.c = 3.5; }, /field "model.vocab\["c"\]" is 3.5: a token id must be an integer/],
    ['a negative id', (j: ReturnType<typeof bpe>) => { j.model.vocab.c = -3; }, /field "model.vocab\["c"\]" is -3/],
    ['a string id', (j: ReturnType<typeof bpe>) => { j.model.vocab.c = '3'; }, /field "model.vocab\["c"\]" is "3"/],
    ['an added token without an integer id', (j: ReturnType<typeof bpe>) => { j.added_tokens[0] = { id: 1.5, content: '<unk>' }; }, /field "added_tokens\[0\].id" is 1.5/],
    ['an added token that is not an object', (j: ReturnType<typeof bpe>) => { j.added_tokens[0] = 7; }, /field "added_tokens\[0\]" must be an object/],
    ['a decoder without a type', (j: ReturnType<typeof bpe>) => { j.decoder = { fuse: true }; }, /field "decoder" must be null or an object with a string "type"/],
    ['a decoder type the library does not know', (j: ReturnType<typeof bpe>) => { j.decoder = { type: 'Quantum' }; }, /x\/tokenizer\.json: cannot be loaded: Unknown Decoder type: Quantum/],
    ['a vocabulary that is not an object', (j: ReturnType<typeof bpe>) => { j.model.vocab = [] as never; }, /field "model.vocab" must be an object of token -> id, got an array/],
  ])('refuses %s, naming the file and field', (_what, mutate, message) => {
    const j = bpe();
    mutate(j);
    expect(() => Tokenizer.fromJson(j, {}, 'x/tokenizer.json')).toThrow(message);
    expect(() => Tokenizer.fromJson(j, {}, 'x/tokenizer.json')).toThrow(/^x\/tokenizer\.json: /);
  });

  it('refuses a tokenizer.json that is not UTF-8, naming it', async () => {
    const dir = path.join(tmp, 'latin1-tok');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'tokenizer.json'), Buffer.from('{"model": {"type": "BPE", "vocab": {"\u00e9": 0}, "merges": []}}', 'latin1'));
    await expect(Tokenizer.fromDir(dir)).rejects.toThrow(`${path.join(dir, 'tokenizer.json')}: not valid UTF-8 text`);
  });
});
