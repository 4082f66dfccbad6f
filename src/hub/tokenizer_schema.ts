/**
 * tokenizer.json checked against the schema of HF `tokenizers` before use: a known model type, a vocabulary of
 * token -> non-negative integer id, BPE merges that are pairs of vocabulary tokens whose join is in the vocabulary
 * (what the Rust library itself requires), added tokens with integer ids, and pipeline components that are objects
 * with a `type`. A file that fails gets an error naming it and the field, instead of being half-accepted by the JS
 * library and failing (or silently mis-tokenizing) later.
 */
import { InputFileError } from './input_error.js';

export const TOKENIZER_MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram', 'WordLevel'] as const;
export type TokenizerModelType = (typeof TOKENIZER_MODEL_TYPES)[number];

/** Largest token id accepted (16.7M; real vocabularies stay under 300k). */
export const MAX_TOKEN_ID = (1 << 24) - 1;

const COMPONENTS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;

/** Throws an InputFileError naming `source` and the field at fault; returns the model type (inferred if absent). */
export function validateTokenizerJson(json: unknown, source: string): TokenizerModelType {
  const fail = (field: string, why: string): never => {
    throw new InputFileError(source, `field "${field}" ${why}`);
  };
  if (!isObject(json)) throw new InputFileError(source, `expected a JSON object, got ${describe(json)}`);
  const model = json.model;
  if (!isObject(model)) fail('model', `must be an object, got ${describe(model)}`);
  const m = model as Record<string, unknown>;
  const type = modelType(m, fail);

  if (type === 'Unigram') {
    if (!Array.isArray(m.vocab)) fail('model.vocab', `must be an array of [token, score] pairs for a Unigram model, got ${describe(m.vocab)}`);
    const vocab = m.vocab as unknown[];
    if (vocab.length === 0) fail('model.vocab', 'is empty');
    if (vocab.length > MAX_TOKEN_ID + 1) fail('model.vocab', `has ${vocab.length} entries, more than ${MAX_TOKEN_ID + 1}`);
    vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || typeof entry[1] !== 'number' || !Number.isFinite(entry[1])) {
        fail(`model.vocab[${i}]`, `must be a [token, score] pair, got ${JSON.stringify(entry)?.slice(0, 80)}`);
      }
    });
    const unk = m.unk_id;
    if (unk !== undefined && unk !== null && (!Number.isSafeInteger(unk) || (unk as number) < 0 || (unk as number) >= vocab.length)) {
      fail('model.unk_id', `is ${JSON.stringify(unk)}: it must be an index into the ${vocab.length}-entry vocabulary`);
    }
  } else {
    const vocab = checkVocab(m.vocab, fail);
    if (type === 'BPE') checkMerges(m, vocab, fail);
    for (const key of ['unk_token', 'continuing_subword_prefix', 'end_of_word_suffix']) {
      const v = m[key];
      if (v !== undefined && v !== null && typeof v !== 'string') fail(`model.${key}`, `must be a string or null, got ${describe(v)}`);
    }
    if (type === 'WordPiece' && typeof m.unk_token !== 'string') fail('model.unk_token', 'must be a string for a WordPiece model');
  }

  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) fail('added_tokens', `must be an array, got ${describe(added)}`);
    (added as unknown[]).forEach((t, i) => {
      if (!isObject(t)) fail(`added_tokens[${i}]`, `must be an object with "id" and "content", got ${describe(t)}`);
      const tok = t as Record<string, unknown>;
      checkId(tok.id, () => `added_tokens[${i}].id`, fail);
      if (typeof tok.content !== 'string' || tok.content === '') fail(`added_tokens[${i}].content`, 'must be a non-empty string');
      for (const flag of ['special', 'single_word', 'lstrip', 'rstrip', 'normalized']) {
        const v = tok[flag];
        if (v !== undefined && typeof v !== 'boolean') fail(`added_tokens[${i}].${flag}`, `must be true or false, got ${describe(v)}`);
      }
    });
  }
  for (const key of COMPONENTS) {
    const c = json[key];
    if (c === undefined || c === null) continue;
    if (!isObject(c) || typeof c.type !== 'string') fail(key, `must be null or an object with a string "type", got ${describe(c)}`);
  }
  return type;
}

function modelType(m: Record<string, unknown>, fail: (f: string, w: string) => never): TokenizerModelType {
  const t = m.type;
  if (t === undefined || t === null) {
    // Files written before "type" existed: the fields tell the model, as HF's loader infers it.
    if (Array.isArray(m.vocab)) return 'Unigram';
    if (m.merges !== undefined) return 'BPE';
    if (m.continuing_subword_prefix !== undefined) return 'WordPiece';
    return 'WordLevel';
  }
  if (typeof t !== 'string' || !(TOKENIZER_MODEL_TYPES as readonly string[]).includes(t)) {
    fail('model.type', `is ${JSON.stringify(t)}: not a known tokenizer model (supported: ${TOKENIZER_MODEL_TYPES.join(', ')})`);
  }
  return t as TokenizerModelType;
}

function checkVocab(vocab: unknown, fail: (f: string, w: string) => never): Map<string, number> {
  if (!isObject(vocab)) fail('model.vocab', `must be an object of token -> id, got ${describe(vocab)}`);
  const out = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab as Record<string, unknown>)) {
    checkId(id, () => `model.vocab[${JSON.stringify(token)}]`, fail);
    out.set(token, id as number);
  }
  if (out.size === 0) fail('model.vocab', 'is empty');
  return out;
}

/** `field` is a function so the hot path (every vocabulary entry) builds no strings. */
function checkId(id: unknown, field: () => string, fail: (f: string, w: string) => never): void {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
    fail(field(), `is ${JSON.stringify(id) ?? 'missing'}: a token id must be an integer from 0 to ${MAX_TOKEN_ID}`);
  }
}

/** BPE merges: "a b" strings or [a, b] pairs, both pieces and their join in the vocabulary. */
function checkMerges(m: Record<string, unknown>, vocab: Map<string, number>, fail: (f: string, w: string) => never): void {
  const merges = m.merges;
  if (merges === undefined || merges === null) fail('model.merges', 'is missing: a BPE model needs its merges (an empty list if none)');
  if (!Array.isArray(merges)) fail('model.merges', `must be an array, got ${describe(merges)}`);
  const list = merges as unknown[];
  // The library tells the two forms apart by the first entry; a mix would be misread.
  const asPairs = Array.isArray(list[0]);
  const prefix = typeof m.continuing_subword_prefix === 'string' ? m.continuing_subword_prefix : '';
  list.forEach((entry, i) => {
    let pair: unknown[];
    if (asPairs) {
      if (!Array.isArray(entry)) fail(`model.merges[${i}]`, `must be a [left, right] pair like the other merges, got ${JSON.stringify(entry)?.slice(0, 80)}`);
      pair = entry as unknown[];
    } else {
      if (typeof entry !== 'string') fail(`model.merges[${i}]`, `must be a "left right" string like the other merges, got ${JSON.stringify(entry)?.slice(0, 80)}`);
      pair = (entry as string).split(' ');
    }
    if (pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string' || pair[0] === '' || pair[1] === '') {
      fail(`model.merges[${i}]`, `must be two non-empty tokens, got ${JSON.stringify(entry)?.slice(0, 80)}`);
    }
    const [a, b] = pair as [string, string];
    for (const piece of [a, b]) {
      if (!vocab.has(piece)) fail(`model.merges[${i}]`, `merges ${JSON.stringify(piece)}, which is not in model.vocab`);
    }
    const joined = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
    if (!vocab.has(joined)) fail(`model.merges[${i}]`, `makes ${JSON.stringify(joined)}, which is not in model.vocab`);
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** What the built tokenizer must encode and decode without failing before it is handed out. */
const PROBE_TEXT = 'Hello, world! 123\n';

/**
 * Builds a tokenizer from a validated file and tries it once: errors of the tokenizer library on this file (an
 * unknown pre-tokenizer, a malformed post-processor) become InputFileErrors naming `source`, here rather than at the
 * first batch of training.
 */
export function checkedTokenizer<T extends { selfCheck(text: string): void }>(build: () => T, source: string): T {
  let tok: T;
  try {
    tok = build();
  } catch (e) {
    if (e instanceof InputFileError) throw e;
    throw new InputFileError(source, `cannot be loaded: ${(e as Error)?.message ?? String(e)}`);
  }
  try {
    tok.selfCheck(PROBE_TEXT);
  } catch (e) {
    if (e instanceof InputFileError) throw e;
    throw new InputFileError(source, `fails to encode and decode a test sentence: ${(e as Error)?.message ?? String(e)}`);
  }
  return tok;
}
