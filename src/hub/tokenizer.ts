/**
 * Tokenizer: Hugging Face tokenizer directories (tokenizer.json + tokenizer_config.json) read, used and written back.
 *
 * Encoding and decoding run in `@huggingface/tokenizers` 0.2.0 (a pure-JS port of HF tokenizers); this class adds
 * what the trainers need around it: the special tokens of tokenizer_config.json, batches padded to a side, truncation
 * that keeps the special tokens, GPT-2 `vocab.json` + `merges.txt` directories, and `save` in a form that
 * `AutoTokenizer.from_pretrained(dir)` loads.
 *
 * Checked against transformers 5.17 (test/fixtures): `encode` gives HF's `input_ids` exactly, with and without
 * special tokens; `decode(ids)` gives HF's `decode(ids)`.
 *
 * Choices that differ from (or go beyond) the JS library:
 * - `decode([])` is "" (the library throws); ids with no token (e.g. a padded embedding row) are dropped, as HF does.
 * - `skipSpecialTokens` skips `specialTokenIds`: the config's named special tokens plus the added tokens flagged
 *   `special`, except byte-fallback pieces `<0x00>`..`<0xFF>`: those are text (one byte each), even when a trainer
 *   registered them as special (the llama fixture does), so skipping them would cut characters out of the text.
 * - `add_bos_token` / `add_eos_token`, when tokenizer_config.json sets either, decide which of bos/eos
 *   `addSpecialTokens` adds (HF rebuilds its post-processor from them); otherwise tokenizer.json's post-processor does.
 * - `clean_up_tokenization_spaces` defaults to false (transformers 5; the library defaults to true).
 * - No pad token: padding uses eos (what HF users set by hand), and `save` writes that choice as `pad_token`.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InputFileError, fileReadError } from './input_error.js';
import { checkedTokenizer, validateTokenizerJson } from './tokenizer_schema.js';

export type PaddingSide = 'left' | 'right';

/** A tokenizer.json object (the HF `tokenizers` serialization). Only `model` is required. */
export type TokenizerJson = { model: Record<string, unknown> } & Record<string, unknown>;

/** The keys of tokenizer_config.json this class reads; other keys are kept and written back by `save`. */
export type RawTokenizerConfig = Record<string, unknown>;

export interface EncodeOptions {
  /** Add what the post-processor (or add_bos_token/add_eos_token) adds, e.g. OPT's leading `</s>`. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop the ids in `specialTokenIds` before decoding. Default false (HF's default). */
  skipSpecialTokens?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** Side the pad ids go on; default the config's `padding_side` (HF default "right"). Generation wants "left". */
  paddingSide?: PaddingSide;
  /** "longest": pad to the longest row; "max_length": pad every row to `maxLength`. Default "longest". */
  padding?: 'longest' | 'max_length';
  /** Row length limit (truncation) and the "max_length" padding target. */
  maxLength?: number;
  /** Cut rows longer than `maxLength` (else the config's model_max_length). Default: true when maxLength is given. */
  truncation?: boolean;
}

export interface BatchEncoding {
  inputIds: number[][]; // (B, T)
  attentionMask: number[][]; // (B, T): 1 on real tokens, 0 on padding
}

/** tokenizer_config.json after parsing; `extra` is the whole raw object, kept for `save`. */
interface ParsedConfig {
  bosToken: string | null;
  eosToken: string | null;
  unkToken: string | null;
  padToken: string | null;
  additionalSpecialTokens: string[];
  paddingSide: PaddingSide;
  truncationSide: PaddingSide;
  addBosToken: boolean | null; // null: not set in the config
  addEosToken: boolean | null;
  modelMaxLength: number | null; // null: absent, or HF's "no limit" sentinel (int(1e30))
  chatTemplate: string | null;
  cleanUpTokenizationSpaces: boolean;
  extra: RawTokenizerConfig;
}

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const;
const GPT2_END_OF_TEXT = '<|endoftext|>';
const BYTE_FALLBACK_PIECE = /^<0x[0-9A-F]{2}>$/;
/** model_max_length at or above this is HF's "unset" sentinel (VERY_LARGE_INTEGER = int(1e30)). */
const NO_LENGTH_LIMIT = 1e18;

export class Tokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly unkTokenId: number | null;
  /** The id batches are padded with: the pad token, else eos; null when there is neither. */
  readonly padTokenId: number | null;
  readonly paddingSide: PaddingSide;
  /** Ids that `skipSpecialTokens` removes (see the file comment for which). */
  readonly specialTokenIds: Set<number>;
  /** One more than the largest id: the embedding rows the vocabulary needs (HF's `len(tokenizer)`). */
  readonly vocabSize: number;
  readonly modelMaxLength: number | null;
  readonly chatTemplate: string | null;
  /** The file the chat template was read from (chat_template.jinja or tokenizer_config.json), for error messages. */
  readonly chatTemplateSource: string | null;

  private readonly inner: HfTokenizer;

  private constructor(
    private readonly json: TokenizerJson,
    private readonly config: ParsedConfig,
    chatTemplateSource: string | null = null,
  ) {
    // The library insists that these keys exist; older files may omit some of them.
    const forLibrary = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...json,
    };
    this.inner = new HfTokenizer(forLibrary, libraryConfig(config));

    let maxId = -1;
    for (const id of this.inner.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    this.bosTokenId = this.tokenToId(config.bosToken);
    this.eosTokenId = this.tokenToId(config.eosToken);
    this.unkTokenId = this.tokenToId(config.unkToken);
    this.padTokenId = this.tokenToId(config.padToken) ?? this.eosTokenId;
    this.paddingSide = config.paddingSide;
    this.modelMaxLength = config.modelMaxLength;
    this.chatTemplate = config.chatTemplate;
    this.chatTemplateSource = config.chatTemplate === null ? null : (chatTemplateSource ?? 'tokenizer_config.json');
    this.specialTokenIds = this.collectSpecialIds();
  }

  /**
   * Loads a tokenizer directory: tokenizer.json, or GPT-2's vocab.json + merges.txt; plus tokenizer_config.json,
   * special_tokens_map.json and chat_template.jinja when present.
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    const configFile = path.join(dir, 'tokenizer_config.json');
    const raw: RawTokenizerConfig = (await exists(configFile)) ? await readJsonObject(configFile) : {};
    // Like HF: special_tokens_map.json fills special tokens the config does not name.
    const mapFile = path.join(dir, 'special_tokens_map.json');
    if (await exists(mapFile)) {
      const map = await readJsonObject(mapFile);
      for (const key of [...SPECIAL_TOKEN_KEYS, 'additional_special_tokens']) {
        if (raw[key] === undefined && map[key] !== undefined) raw[key] = map[key];
      }
    }
    const templateFile = path.join(dir, 'chat_template.jinja'); // where transformers 5 saves it
    let templateSource: string | null = raw.chat_template === undefined ? null : configFile;
    if (raw.chat_template === undefined && (await exists(templateFile))) {
      raw.chat_template = await readFile(templateFile, 'utf8');
      templateSource = templateFile;
    }

    const jsonFile = path.join(dir, 'tokenizer.json');
    if (await exists(jsonFile)) {
      return Tokenizer.fromJson(await readJsonObject(jsonFile), raw, jsonFile, templateSource);
    }
    const vocabFile = path.join(dir, 'vocab.json');
    const mergesFile = path.join(dir, 'merges.txt');
    if ((await exists(vocabFile)) && (await exists(mergesFile))) {
      return Tokenizer.fromGpt2Files(vocabFile, mergesFile, { config: raw });
    }
    throw new Error(`No tokenizer in ${dir}: expected tokenizer.json, or vocab.json + merges.txt (GPT-2 style)`);
  }

  /**
   * Builds a tokenizer from a tokenizer.json object and a tokenizer_config.json object. Without a config, the special
   * tokens are inferred: unk from the model's `unk_token`, bos/eos = `<|endoftext|>` when it is an added token
   * (GPT-2's convention, also used by `buildCharTokenizerJson`).
   */
  static fromJson(json: object, config: RawTokenizerConfig = {}, source = 'tokenizer.json', templateSource: string | null = null): Tokenizer {
    const tokenizerJson = checkTokenizerJson(json, source);
    const configSource = source.replace(/tokenizer\.json$/, 'tokenizer_config.json');
    const parsed = parseConfig(config, configSource);
    inferMissingSpecialTokens(parsed, tokenizerJson);
    return checkedTokenizer(() => new Tokenizer(tokenizerJson, parsed, templateSource ?? configSource), source);
  }

  /**
   * The named special tokens as strings, as transformers hands them to a chat template (`bos_token`, `eos_token`,
   * `unk_token`, `pad_token`, `additional_special_tokens`); a token the tokenizer does not have is left out.
   */
  specialTokensMap(): Record<string, string | string[]> {
    const c = this.config;
    const out: Record<string, string | string[]> = {};
    const named: Array<[string, string | null]> = [['bos_token', c.bosToken], ['eos_token', c.eosToken], ['unk_token', c.unkToken], ['pad_token', c.padToken]];
    for (const [key, token] of named) if (token !== null) out[key] = token;
    if (c.additionalSpecialTokens.length) out.additional_special_tokens = [...c.additionalSpecialTokens];
    return out;
  }

  /**
   * A byte-level BPE tokenizer from GPT-2's original files: `vocab.json` (a.k.a. encoder.json, token -> id) and
   * `merges.txt` (a.k.a. vocab.bpe). `<|endoftext|>` (or `opts.endOfText`) is the special, bos, eos and unk token.
   */
  static async fromGpt2Files(
    vocabJsonPath: string,
    mergesPath: string,
    opts: { config?: RawTokenizerConfig; endOfText?: string } = {},
  ): Promise<Tokenizer> {
    const vocab = parseGpt2Vocab(await readJsonObject(vocabJsonPath), vocabJsonPath);
    const merges = parseMerges(await readFile(mergesPath, 'utf8'), mergesPath);
    const endOfText = opts.endOfText ?? GPT2_END_OF_TEXT;
    const json = gpt2TokenizerJson(vocab, merges, endOfText);
    const defaults = { bos_token: endOfText, eos_token: endOfText, unk_token: endOfText };
    // Config errors then name the tokenizer_config.json beside the GPT-2 files.
    const source = path.join(path.dirname(vocabJsonPath), 'tokenizer.json');
    return Tokenizer.fromJson(json, { ...defaults, ...opts.config }, source);
  }

  /** Encodes and decodes `text` with the underlying library only (a load-time check; no user-visible encode). */
  selfCheck(text: string): void {
    this.inner.decode(this.inner.encode(text, { add_special_tokens: true }).ids);
  }

  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`Tokenizer.encode: text must be a string, got ${typeof text}`);
    const { addBosToken, addEosToken } = this.config;
    if (addBosToken === null && addEosToken === null) {
      return this.inner.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    }
    const ids = this.inner.encode(text, { add_special_tokens: false }).ids;
    if (!addSpecialTokens) return ids;
    if (addBosToken && this.bosTokenId !== null) ids.unshift(this.bosTokenId);
    if (addEosToken && this.eosTokenId !== null) ids.push(this.eosTokenId);
    return ids;
  }

  decode(ids: ArrayLike<number>, { skipSpecialTokens = false }: DecodeOptions = {}): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id)) throw new TypeError(`Tokenizer.decode: ids[${i}] = ${id} is not an integer`);
      if (id < 0 || id >= this.vocabSize || this.inner.id_to_token(id) === undefined) continue;
      if (skipSpecialTokens && this.specialTokenIds.has(id)) continue;
      kept.push(id);
    }
    if (kept.length === 0) return '';
    return this.inner.decode(kept, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: this.config.cleanUpTokenizationSpaces,
    });
  }

  /** Encodes, truncates and pads a batch; rows are padded with `padTokenId` and masked with 0. */
  batchEncode(texts: readonly string[], opts: BatchEncodeOptions = {}): BatchEncoding {
    const { addSpecialTokens = true, padding = 'longest', maxLength } = opts;
    const side = opts.paddingSide ?? this.paddingSide;
    if (maxLength !== undefined && !(Number.isInteger(maxLength) && maxLength > 0)) {
      throw new RangeError(`Tokenizer.batchEncode: maxLength must be a positive integer, got ${maxLength}`);
    }
    if (padding === 'max_length' && maxLength === undefined) {
      throw new Error('Tokenizer.batchEncode: padding "max_length" needs maxLength');
    }
    const truncation = opts.truncation ?? maxLength !== undefined;
    const limit = truncation ? (maxLength ?? this.modelMaxLength) : null;

    const rows = texts.map((text) => this.encodeWithin(text, addSpecialTokens, limit));
    const longest = rows.reduce((m, r) => Math.max(m, r.length), 0);
    const width = padding === 'max_length' ? Math.max(longest, maxLength ?? 0) : longest;
    if (rows.some((r) => r.length < width) && this.padTokenId === null) {
      throw new Error('Tokenizer.batchEncode: rows need padding but there is no pad_token and no eos_token');
    }
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of rows) {
      const pad = new Array<number>(width - row.length).fill(this.padTokenId ?? 0);
      const ones = new Array<number>(row.length).fill(1);
      const zeros = new Array<number>(pad.length).fill(0);
      inputIds.push(side === 'left' ? [...pad, ...row] : [...row, ...pad]);
      attentionMask.push(side === 'left' ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    return { inputIds, attentionMask };
  }

  tokenToId(token: string | null): number | null {
    if (token === null) return null;
    return this.inner.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.inner.id_to_token(id) ?? null;
  }

  /** The tokenizer.json this tokenizer was built from (not a copy: do not mutate). */
  toJson(): TokenizerJson {
    return this.json;
  }

  /** Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir` (created if needed). */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const c = this.config;
    const padToken = c.padToken ?? (this.padTokenId === null ? null : this.idToToken(this.padTokenId));
    const specials: Record<string, unknown> = {};
    const named: Array<[string, string | null]> = [
      ['bos_token', c.bosToken],
      ['eos_token', c.eosToken],
      ['unk_token', c.unkToken],
      ['pad_token', padToken],
    ];
    for (const [key, token] of named) if (token !== null) specials[key] = token;
    if (c.additionalSpecialTokens.length > 0) specials.additional_special_tokens = c.additionalSpecialTokens;

    const config: RawTokenizerConfig = {
      ...c.extra,
      tokenizer_class: c.extra.tokenizer_class ?? 'PreTrainedTokenizerFast',
      ...specials,
      padding_side: c.paddingSide,
      truncation_side: c.truncationSide,
      clean_up_tokenization_spaces: c.cleanUpTokenizationSpaces,
    };
    // A huge model_max_length (HF's "unset") would be written as 1e+30; leaving it out means the same to HF.
    if (typeof config.model_max_length === 'number' && !Number.isSafeInteger(config.model_max_length)) {
      delete config.model_max_length;
    }
    if (c.chatTemplate !== null && config.chat_template === undefined) config.chat_template = c.chatTemplate;

    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(this.json, null, 2) + '\n');
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
    await writeFile(path.join(dir, 'special_tokens_map.json'), JSON.stringify(specials, null, 2) + '\n');
  }

  /** Encodes one row, cutting its text part (not its special tokens) so the row fits in `limit`. */
  private encodeWithin(text: string, addSpecialTokens: boolean, limit: number | null): number[] {
    const full = this.encode(text, { addSpecialTokens });
    if (limit === null || full.length <= limit) return full;
    const body = addSpecialTokens ? this.encode(text, { addSpecialTokens: false }) : full;
    const start = findSlice(full, body);
    const added = full.length - body.length;
    if (start < 0 || added >= limit) return this.cut(full, limit); // specials not separable, or they alone overflow
    const keptBody = this.cut(body, limit - added);
    return [...full.slice(0, start), ...keptBody, ...full.slice(start + body.length)];
  }

  private cut(ids: number[], length: number): number[] {
    return this.config.truncationSide === 'left' ? ids.slice(ids.length - length) : ids.slice(0, length);
  }

  private collectSpecialIds(): Set<number> {
    const ids = new Set<number>();
    const c = this.config;
    for (const token of [c.bosToken, c.eosToken, c.unkToken, c.padToken, ...c.additionalSpecialTokens]) {
      const id = this.tokenToId(token);
      if (id !== null) ids.add(id);
    }
    const byteFallback = this.json.model.byte_fallback === true;
    for (const [id, added] of this.inner.get_added_tokens_decoder()) {
      if (added.special && !(byteFallback && BYTE_FALLBACK_PIECE.test(added.content))) ids.add(id);
    }
    return ids;
  }
}

/** The tokenizer.json of GPT-2's byte-level BPE, as HF's converter writes it. */
export function gpt2TokenizerJson(
  vocab: Record<string, number>,
  merges: Array<[string, string]>,
  endOfText = GPT2_END_OF_TEXT,
): TokenizerJson {
  const fullVocab = { ...vocab };
  if (fullVocab[endOfText] === undefined) {
    fullVocab[endOfText] = Object.values(vocab).reduce((m, id) => Math.max(m, id), -1) + 1;
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: fullVocab[endOfText],
        content: endOfText,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: fullVocab,
      // "a b" strings: the form every tokenizers version reads (byte-level pieces never contain a space).
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** Parses merges.txt: an optional `#version` line, then one "left right" pair per line. */
export function parseMerges(text: string, file: string): Array<[string, string]> {
  const merges: Array<[string, string]> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      const got = JSON.stringify(line);
      throw new Error(`${file}:${i + 1}: a merge must be two tokens separated by one space, got ${got}`);
    }
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

function parseGpt2Vocab(raw: Record<string, unknown>, file: string): Record<string, number> {
  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(raw)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new Error(`${file}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected an integer >= 0`);
    }
    vocab[token] = id as number;
  }
  return vocab;
}

function checkTokenizerJson(json: unknown, source: string): TokenizerJson {
  validateTokenizerJson(json, source);
  return json as TokenizerJson;
}

function parseConfig(raw: RawTokenizerConfig, source: string): ParsedConfig {
  if (!isObject(raw)) throw new Error(`${source}: expected a JSON object`);
  const token = (key: string): string | null => specialTokenContent(raw[key], source, key);
  const extras = raw.additional_special_tokens ?? [];
  if (!Array.isArray(extras)) throw new Error(`${source}: field "additional_special_tokens" must be an array`);
  const side = (key: string): PaddingSide => {
    const value = raw[key] ?? 'right';
    if (value !== 'left' && value !== 'right') {
      throw new Error(`${source}: field "${key}" must be "left" or "right", got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const flag = (key: string): boolean | null => {
    const value = raw[key];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'boolean') throw new Error(`${source}: field "${key}" must be true or false`);
    return value;
  };
  const maxLength = raw.model_max_length;
  if (maxLength !== undefined && maxLength !== null && typeof maxLength !== 'number') {
    throw new Error(`${source}: field "model_max_length" must be a number`);
  }
  return {
    bosToken: token('bos_token'),
    eosToken: token('eos_token'),
    unkToken: token('unk_token'),
    padToken: token('pad_token'),
    additionalSpecialTokens: extras.map(
      (t, i) => specialTokenContent(t, source, `additional_special_tokens[${i}]`) as string,
    ),
    paddingSide: side('padding_side'),
    truncationSide: side('truncation_side'),
    addBosToken: flag('add_bos_token'),
    addEosToken: flag('add_eos_token'),
    modelMaxLength: typeof maxLength === 'number' && maxLength < NO_LENGTH_LIMIT ? maxLength : null,
    chatTemplate: chatTemplateText(raw.chat_template, source),
    cleanUpTokenizationSpaces: flag('clean_up_tokenization_spaces') ?? false,
    extra: { ...raw },
  };
}

/** Special tokens are written as strings or as serialized AddedToken objects ({content, ...}). */
function specialTokenContent(value: unknown, source: string, key: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  throw new Error(`${source}: field "${key}" must be a string or an object with a string "content"`);
}

/** chat_template is a string, or a list of {name, template} of which "default" is the one HF uses. */
function chatTemplateText(value: unknown, source: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => isObject(t) && t.name === 'default') ?? value[0];
    if (isObject(named) && typeof named.template === 'string') return named.template;
  }
  throw new Error(`${source}: field "chat_template" must be a string or a list of {name, template}`);
}

function inferMissingSpecialTokens(config: ParsedConfig, json: TokenizerJson): void {
  const unk = json.model.unk_token;
  if (config.unkToken === null && typeof unk === 'string') config.unkToken = unk;
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  const hasEndOfText = added.some((t) => isObject(t) && t.content === GPT2_END_OF_TEXT);
  if (config.bosToken === null && config.eosToken === null && hasEndOfText) {
    config.bosToken = GPT2_END_OF_TEXT;
    config.eosToken = GPT2_END_OF_TEXT;
  }
}

/** The config handed to the JS library: special tokens as plain strings (it reads a few of them). */
function libraryConfig(config: ParsedConfig): RawTokenizerConfig {
  const out: RawTokenizerConfig = { ...config.extra };
  const named: Array<[string, string | null]> = [
    ['bos_token', config.bosToken],
    ['eos_token', config.eosToken],
    ['unk_token', config.unkToken],
    ['pad_token', config.padToken],
  ];
  for (const [key, value] of named) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  out.additional_special_tokens = config.additionalSpecialTokens;
  out.clean_up_tokenization_spaces = config.cleanUpTokenizationSpaces;
  return out;
}

/** Index where `part` occurs as a contiguous slice of `whole`, or -1. */
function findSlice(whole: number[], part: number[]): number {
  for (let start = 0; start + part.length <= whole.length; start++) {
    let match = true;
    for (let j = 0; j < part.length && match; j++) match = whole[start + j] === part[j];
    if (match) return start;
  }
  return -1;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function strictUtf8(file: string, bytes: Uint8Array): string {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new InputFileError(file, 'not valid UTF-8 text');
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = strictUtf8(file, await readFile(file));
  } catch (err) {
    throw fileReadError(file, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InputFileError(file, `invalid JSON (${(err as Error).message})`);
  }
  if (!isObject(value)) throw new InputFileError(file, 'expected a JSON object');
  return value;
}
