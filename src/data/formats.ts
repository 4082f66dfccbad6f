/**
 * SFT dataset formats: detect the format from the first record's fields and map every record to a normalized sample,
 * `{messages}` (chat) or `{text}` (plain text).
 *
 * | format            | fields                                                        |
 * |-------------------|---------------------------------------------------------------|
 * | alpaca            | instruction, input?, output (+ system?, history? as LLaMA-Factory) |
 * | self_instruct     | instruction, instances[{input, output}] -> one sample per instance |
 * | chatglm           | content, summary (AdvertiseGen)                                |
 * | prompt_response   | prompt, response, history? [[q, a], ...]                       |
 * | conversations     | conversations[{from: human/gpt/user/assistant/system, value}], system? |
 * | messages          | messages[{role, content}]                                      |
 * | text              | text                                                           |
 * | poetry            | paragraphs[] (+ title/rhythmic, author): chinese-poetry, as text |
 * | columns           | the user's promptColumn / responseColumn                       |
 */
import { DataError } from './location.js';
import { type FieldSource, historyMessages, optionalString, parseTurn, requireArray, requireString } from './fields.js';
import { readRecords, type ReadOptions } from './readers.js';
import type { ChatMessage, ChatSample, DataRecord, LocatedRecord, Sample } from './types.js';

export type SftFormat =
  | 'alpaca'
  | 'self_instruct'
  | 'chatglm'
  | 'prompt_response'
  | 'conversations'
  | 'messages'
  | 'text'
  | 'poetry'
  | 'columns';

export interface FormatOptions {
  /** Skip detection. */
  format?: SftFormat;
  /** Field holding the user's prompt; with responseColumn, overrides detection. */
  promptColumn?: string;
  /** Field holding the reply to train on. */
  responseColumn?: string;
  /** Skip (and count) records that lack the needed fields instead of failing. */
  skipBadRecords?: boolean;
}

/** The prompt/response fields of the single-turn formats, used as defaults when only one column is overridden. */
const DEFAULT_COLUMNS: Partial<Record<SftFormat, { prompt: string; response: string }>> = {
  alpaca: { prompt: 'instruction', response: 'output' },
  chatglm: { prompt: 'content', response: 'summary' },
  prompt_response: { prompt: 'prompt', response: 'response' },
};

/** The format of a dataset, from the fields of its first record. */
export function detectFormat(first: LocatedRecord, opts: FormatOptions = {}): SftFormat {
  if (opts.format) return opts.format;
  if (opts.promptColumn !== undefined || opts.responseColumn !== undefined) return 'columns';
  const has = (k: string): boolean => k in first.value;
  if (has('chosen') && has('rejected')) {
    throw new DataError(first.location, 'this is a preference dataset (chosen/rejected), not SFT data: train a reward model on it (train_reward_model --dataset FILE)');
  }
  if (has('messages')) return 'messages';
  if (has('conversations')) return 'conversations';
  if (has('instances')) return 'self_instruct';
  if (has('instruction')) return 'alpaca';
  if (has('content') || has('summary')) return 'chatglm';
  if (has('prompt') || has('response')) return 'prompt_response';
  if (has('text')) return 'text';
  if (has('paragraphs')) return 'poetry';
  throw new DataError(
    first.location,
    `cannot tell the dataset format from its fields (${Object.keys(first.value).join(', ')}); expected ` +
      'instruction/input/output, instruction/instances, content/summary, prompt/response, conversations, messages ' +
      'or text, or pass --prompt_column and --response_column',
  );
}

/** One record -> its samples (self-instruct gives one per instance; every other format one). */
export function normalizeRecord(rec: LocatedRecord, format: SftFormat, opts: FormatOptions = {}): Sample[] {
  const location = rec.location;
  switch (format) {
    case 'alpaca':
      return [alpacaSample(rec, requireString(rec, 'instruction'), optionalString(rec, 'input'), requireResponse(rec, 'output'))];
    case 'self_instruct': {
      const instruction = requireString(rec, 'instruction');
      const instances = requireArray(rec, 'instances');
      if (instances.length === 0) throw new DataError(location, 'field "instances" is empty');
      return instances.map((inst, i) => {
        const instRec = subRecord(rec, inst, `instances[${i}]`);
        return alpacaSample(rec, instruction, optionalString(instRec, 'input'), requireResponse(instRec, 'output'));
      });
    }
    case 'chatglm':
      return [singleTurn(rec, requireString(rec, 'content'), requireResponse(rec, 'summary'))];
    case 'prompt_response':
      return [singleTurn(rec, requireString(rec, 'prompt'), requireResponse(rec, 'response'))];
    case 'columns': {
      const cols = resolveColumns(rec, opts);
      return [singleTurn(rec, requireString(rec, cols.prompt), requireResponse(rec, cols.response))];
    }
    case 'conversations':
    case 'messages': {
      const turns = requireArray(rec, format);
      const messages = turns.map((t, i) => parseTurn(rec, t, `${format}[${i}]`));
      const lastReply = messages.map((m) => m.role).lastIndexOf('assistant');
      if (lastReply < 0) throw new DataError(location, `field "${format}" has no assistant turn to train on`);
      if (messages[lastReply]!.content.trim() === '') {
        const key = 'from' in (turns[lastReply] as object) ? 'value' : 'content';
        throw new DataError(location, `field "${format}[${lastReply}].${key}" is empty: the last assistant reply has nothing to train on`);
      }
      const system = optionalString(rec, 'system');
      if (system && messages[0]?.role !== 'system') messages.unshift({ role: 'system', content: system });
      return [{ messages, location }];
    }
    case 'text':
      return [{ text: requireString(rec, 'text'), location }];
    case 'poetry': {
      const lines = requireArray(rec, 'paragraphs').map((p, i) => {
        if (typeof p !== 'string') throw new DataError(location, `field "paragraphs[${i}]" must be a string`);
        return p;
      });
      const title = optionalString(rec, 'title') || optionalString(rec, 'rhythmic');
      const author = optionalString(rec, 'author');
      return [{ text: [title, author, ...lines].filter((s) => s !== '').join('\n'), location }];
    }
  }
}

export interface NormalizeResult {
  format: SftFormat;
  samples: Sample[];
  /** Records skipped for missing/invalid fields (only with skipBadRecords). */
  skipped: number;
  skippedExamples: string[];
}

/** Detect the format from the first record, then normalize all of them. */
export function normalizeRecords(records: LocatedRecord[], opts: FormatOptions = {}): NormalizeResult {
  const first = records[0];
  if (!first) throw new DataError(undefined, 'no records to normalize');
  const format = detectFormat(first, opts);
  const samples: Sample[] = [];
  const skippedExamples: string[] = [];
  let skipped = 0;
  for (const rec of records) {
    try {
      samples.push(...normalizeRecord(rec, format, opts));
    } catch (err) {
      if (!(err instanceof DataError) || !opts.skipBadRecords) throw err;
      skipped++;
      if (skippedExamples.length < 5) skippedExamples.push(err.message);
    }
  }
  if (samples.length === 0) throw new DataError({ file: first.location.file }, `no usable records (${skippedExamples[0]})`);
  return { format, samples, skipped, skippedExamples };
}

/** Read a file and normalize it: the one call an SFT dataset needs. `skipped` counts bad records of both stages. */
export async function loadSftSamples(path: string, opts: ReadOptions & FormatOptions = {}): Promise<NormalizeResult> {
  const read = await readRecords(path, opts);
  const norm = normalizeRecords(read.records, opts);
  return {
    ...norm,
    skipped: read.skipped + norm.skipped,
    skippedExamples: [...read.skippedExamples, ...norm.skippedExamples].slice(0, 5),
  };
}

function alpacaSample(rec: FieldSource, instruction: string, input: string, output: string): ChatSample {
  // LLaMA-Factory joins instruction and input with a newline; the alpaca template uses the parts instead.
  const user = input ? `${instruction}\n${input}` : instruction;
  const messages: ChatMessage[] = [
    ...systemAndHistory(rec),
    { role: 'user', content: user },
    { role: 'assistant', content: output },
  ];
  return { messages, alpaca: { instruction, input }, location: rec.location };
}

function singleTurn(rec: LocatedRecord, prompt: string, response: string): ChatSample {
  const messages: ChatMessage[] = [
    ...systemAndHistory(rec),
    { role: 'user', content: prompt },
    { role: 'assistant', content: response },
  ];
  return { messages, location: rec.location };
}

function systemAndHistory(rec: FieldSource): ChatMessage[] {
  const system = optionalString(rec, 'system');
  return [...(system ? [{ role: 'system' as const, content: system }] : []), ...historyMessages(rec)];
}

function resolveColumns(rec: LocatedRecord, opts: FormatOptions): { prompt: string; response: string } {
  if (opts.promptColumn && opts.responseColumn) return { prompt: opts.promptColumn, response: opts.responseColumn };
  const detected = detectFormat(rec, { format: undefined, promptColumn: undefined, responseColumn: undefined });
  const defaults = DEFAULT_COLUMNS[detected];
  if (!defaults) {
    throw new DataError(rec.location, `format "${detected}" has no default columns: pass both --prompt_column and --response_column`);
  }
  return { prompt: opts.promptColumn ?? defaults.prompt, response: opts.responseColumn ?? defaults.response };
}

/** The reply to train on: a string with some text (an empty one would leave no token to learn from). */
function requireResponse(rec: FieldSource, field: string): string {
  const value = requireString(rec, field);
  if (value.trim() === '') {
    throw new DataError(rec.location, `field "${(rec.prefix ?? '') + field}" is empty: the response has nothing to train on`);
  }
  return value;
}

/** A nested object (e.g. one self-instruct instance) viewed as a record, so field errors name its path. */
function subRecord(parent: LocatedRecord, value: unknown, path: string): FieldSource {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DataError(parent.location, `field "${path}" must be an object`);
  }
  return { value: value as DataRecord, location: parent.location, prefix: `${path}.` };
}
