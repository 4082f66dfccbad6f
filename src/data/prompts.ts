/**
 * Prompt datasets for PPO rollouts and inference -> user prompts as conversations ending with a user turn.
 * CSV with a `prompt` column (awesome-chatgpt-prompts.csv: act,prompt), JSON/JSONL with `prompt`, `instruction`
 * (+ `input`), `text` or `query`; a `conversations` record gives its turns up to the last user turn, and a
 * preference record (hh-rlhf, rm-static, ShareGPT DPO) its shared prompt.
 */
import { DataError } from './location.js';
import { optionalString, parseTurn, requireArray, requireString } from './fields.js';
import { detectPreferenceFormat, normalizePreferenceRecord } from './preference.js';
import { convertRecords, readRecords, type ReadOptions } from './readers.js';
import type { ChatSample, LocatedRecord } from './types.js';

/** Columns tried in order when none is given. */
export const PROMPT_COLUMNS = ['prompt', 'instruction', 'text', 'query', 'question'] as const;

export interface PromptLoadOptions extends ReadOptions {
  /** The field holding the prompt; detected from the first record when absent. */
  column?: string;
}

export interface PromptLoadResult {
  prompts: ChatSample[];
  /** What the prompts were taken from: a column name, "conversations", or "preference". */
  source: string;
  skipped: number;
  skippedExamples: string[];
}

export async function loadPrompts(path: string, opts: PromptLoadOptions = {}): Promise<PromptLoadResult> {
  const read = await readRecords(path, opts);
  const source = opts.column ?? detectPromptSource(read.records[0]!);
  const { items: prompts, skipped, skippedExamples } = convertRecords(read, (rec) => promptOf(rec, source), opts.skipBadRecords);
  if (prompts.length === 0) throw new DataError({ file: path }, `no usable prompts (${skippedExamples[0]})`);
  return { prompts, source, skipped, skippedExamples };
}

function detectPromptSource(first: LocatedRecord): string {
  const fields = first.value;
  if ('chosen' in fields && 'rejected' in fields) return 'preference';
  if ('conversations' in fields) return 'conversations';
  const column = PROMPT_COLUMNS.find((c) => c in fields);
  if (!column) {
    throw new DataError(
      first.location,
      `no prompt column among fields (${Object.keys(fields).join(', ')}); ` +
        `expected one of ${PROMPT_COLUMNS.join(', ')} or pass --prompt_column`,
    );
  }
  return column;
}

function promptOf(rec: LocatedRecord, source: string): ChatSample {
  const location = rec.location;
  if (source === 'preference') {
    return { messages: normalizePreferenceRecord(rec, detectPreferenceFormat(rec)).prompt, location };
  }
  if (source === 'conversations') {
    const turns = requireArray(rec, 'conversations').map((t, i) => parseTurn(rec, t, `conversations[${i}]`));
    const lastUser = turns.map((m) => m.role).lastIndexOf('user');
    if (lastUser < 0) throw new DataError(location, 'field "conversations" has no user (human) turn');
    return { messages: turns.slice(0, lastUser + 1), location };
  }
  const text = requireString(rec, source);
  if (text.trim() === '') throw new DataError(location, `field "${source}" is empty`);
  if (source === 'instruction') {
    const input = optionalString(rec, 'input');
    const content = input ? `${text}\n${input}` : text;
    return { messages: [{ role: 'user', content }], alpaca: { instruction: text, input }, location };
  }
  return { messages: [{ role: 'user', content: text }], location };
}
