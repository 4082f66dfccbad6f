/**
 * generation_config.json: the decoding defaults a checkpoint ships with (HF's GenerationConfig). `eos_token_id` may
 * be a list (Llama 3 instruct models stop at <|eot_id|> as well as <|end_of_text|>); the sampling fields apply
 * unless a flag overrides them. Fields that would change decoding in a way this project does not implement (beam
 * search, min_p, …) are refused by name instead of ignored.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const GENERATION_CONFIG_FILE = 'generation_config.json';

/** generation_config.json: the decoding defaults it sets, plus the ids that end and pad a row. */
export interface GenerationDefaults extends SamplingFlags {
  /** Every id that ends a row (may be several); null when the file sets none. */
  eosTokenIds: number[] | null;
  padTokenId: number | null;
  /** The file as read, written back when the model is saved. */
  raw: Record<string, unknown>;
  file: string;
}

/** Fields HF applies during decoding that are not implemented here, with the value at which each is inactive. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  num_beams: (v) => typeof v === 'number' && v > 1,
  num_beam_groups: (v) => typeof v === 'number' && v > 1,
  penalty_alpha: (v) => v !== null && v !== undefined && v !== 0,
  min_p: (v) => v !== null && v !== undefined && v !== 0,
  typical_p: (v) => typeof v === 'number' && v < 1,
  epsilon_cutoff: (v) => typeof v === 'number' && v > 0,
  eta_cutoff: (v) => typeof v === 'number' && v > 0,
  min_length: (v) => typeof v === 'number' && v > 0,
  min_new_tokens: (v) => typeof v === 'number' && v > 0,
  no_repeat_ngram_size: (v) => typeof v === 'number' && v > 0,
  encoder_no_repeat_ngram_size: (v) => typeof v === 'number' && v > 0,
  bad_words_ids: (v) => Array.isArray(v) && v.length > 0,
  force_words_ids: (v) => Array.isArray(v) && v.length > 0,
  suppress_tokens: (v) => Array.isArray(v) && v.length > 0,
  begin_suppress_tokens: (v) => Array.isArray(v) && v.length > 0,
  forced_bos_token_id: (v) => v !== null && v !== undefined,
  forced_eos_token_id: (v) => v !== null && v !== undefined,
  sequence_bias: (v) => v !== null && v !== undefined,
  exponential_decay_length_penalty: (v) => v !== null && v !== undefined,
  stop_strings: (v) => v !== null && v !== undefined,
  guidance_scale: (v) => typeof v === 'number' && v !== 1,
};

function ids(v: unknown, file: string, key: string): number[] | null {
  if (v === null || v === undefined) return null;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && (x as number) >= 0)) throw new Error(`${file}: "${key}" must be a token id or a list of token ids (got ${JSON.stringify(v)})`);
  return list as number[];
}

/** Parses a generation_config.json object; `file` names it in errors. */
export function parseGenerationConfig(raw: Record<string, unknown>, file: string): GenerationDefaults {
  const num = (key: string, ok: (x: number) => boolean, what: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !ok(v)) throw new Error(`${file}: "${key}" must be ${what} (got ${JSON.stringify(v)})`);
    return v;
  };
  const doSample = raw.do_sample;
  if (doSample !== undefined && doSample !== null && typeof doSample !== 'boolean') throw new Error(`${file}: "do_sample" must be true or false`);
  const pad = ids(raw.pad_token_id, file, 'pad_token_id');
  return {
    eosTokenIds: ids(raw.eos_token_id, file, 'eos_token_id'),
    padTokenId: pad ? pad[0]! : null,
    doSample: typeof doSample === 'boolean' ? doSample : undefined,
    temperature: num('temperature', (x) => x > 0, 'a positive number'),
    topK: num('top_k', (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    topP: num('top_p', (x) => x > 0 && x <= 1, 'in (0, 1]'),
    repetitionPenalty: num('repetition_penalty', (x) => x > 0, 'a positive number'),
    maxNewTokens: num('max_new_tokens', (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    maxLength: num('max_length', (x) => Number.isInteger(x) && x >= 1, 'a positive integer'),
    raw,
    file,
  };
}

/** A model directory's generation_config.json, or null when it has none. */
export function readGenerationConfig(dir: string): GenerationDefaults | null {
  const file = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(file)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected a JSON object`);
  return parseGenerationConfig(raw as Record<string, unknown>, file);
}

export interface SamplingFlags {
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  maxLength?: number;
}

export interface ResolvedSampling {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  maxNewTokens?: number;
  maxLength?: number;
  /** The settings taken from generation_config.json (for a note to the user). */
  fromFile: string[];
}

/**
 * Each setting from its flag when given, else from generation_config.json, else HF's GenerationConfig default
 * (greedy, temperature 1, top_k 50, top_p 1, no penalty) and `fallbackMaxNewTokens` new tokens. Refuses the
 * file's decoding fields this project does not implement.
 */
export function resolveSampling(flags: SamplingFlags, gen: GenerationDefaults | null, fallbackMaxNewTokens: number): ResolvedSampling {
  if (gen) {
    for (const [key, active] of Object.entries(UNSUPPORTED)) {
      if (key in gen.raw && active(gen.raw[key])) {
        throw new Error(`${gen.file}: "${key}": ${JSON.stringify(gen.raw[key])} is not supported for decoding here (remove it from the file to decode without it)`);
      }
    }
  }
  const fromFile: string[] = [];
  const pick = <T>(flag: T | undefined, file: T | undefined, name: string, fallback: T): T => {
    if (flag !== undefined) return flag;
    if (file !== undefined) {
      fromFile.push(`${name}=${String(file)}`);
      return file;
    }
    return fallback;
  };
  const lengthFlag = flags.maxNewTokens !== undefined || flags.maxLength !== undefined;
  let maxNewTokens = flags.maxNewTokens;
  let maxLength = flags.maxLength;
  if (!lengthFlag) {
    // The file's max_new_tokens wins over its max_length, as in HF.
    if (gen?.maxNewTokens !== undefined) maxNewTokens = pick(undefined, gen.maxNewTokens, 'max_new_tokens', 0);
    else if (gen?.maxLength !== undefined) maxLength = pick(undefined, gen.maxLength, 'max_length', 0);
    else maxNewTokens = fallbackMaxNewTokens;
  }
  return {
    doSample: pick(flags.doSample, gen?.doSample, 'do_sample', false),
    temperature: pick(flags.temperature, gen?.temperature, 'temperature', 1),
    topK: pick(flags.topK, gen?.topK, 'top_k', 50),
    topP: pick(flags.topP, gen?.topP, 'top_p', 1),
    repetitionPenalty: pick(flags.repetitionPenalty, gen?.repetitionPenalty, 'repetition_penalty', 1),
    maxNewTokens,
    maxLength,
    fromFile,
  };
}
