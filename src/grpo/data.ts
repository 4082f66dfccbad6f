/**
 * GRPO's prompts: records read by the generic reader (JSON, JSONL, CSV, … as src/data/readers.ts knows), the prompt
 * taken from one column (a string, or a list of {role, content} messages as TRL's conversational datasets hold),
 * every other column kept for the reward functions (`extra`), rendered with the template and tokenized.
 */
import { convertRecords, readRecords } from '../data/readers.js';
import { DataError } from '../data/location.js';
import { parseTurn } from '../data/fields.js';
import { BatchLoader, type LoaderOptions } from '../data/batching.js';
import type { PromptTemplate } from '../data/templates/index.js';
import type { ChatMessage, DataRecord, LocatedRecord } from '../data/types.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import { tokenizerAddsBos } from '../rollout/prompts.js';

/** Prompt columns tried in order when none is given (TRL's `prompt` first, GSM8K's `question`). */
export const GRPO_PROMPT_COLUMNS = ['prompt', 'question', 'query', 'instruction', 'problem', 'text'] as const;

export interface GrpoPrompt {
  /** Prompt token ids (BOS included where the tokenizer adds one), at most maxPromptLength. */
  ids: number[];
  /** The rendered prompt text, as reward functions receive it. */
  text: string;
  /** The record's other columns. */
  extra: DataRecord;
  /** "file:line" for messages. */
  where: string;
}

export interface GrpoPromptData {
  prompts: GrpoPrompt[];
  column: string;
  skipped: number;
  skippedExamples: string[];
  truncated: number;
}

function messagesOf(rec: LocatedRecord, column: string): ChatMessage[] {
  const v = rec.value[column];
  if (typeof v === 'string') {
    if (v.trim() === '') throw new DataError(rec.location, `field "${column}" is empty`);
    return [{ role: 'user', content: v }];
  }
  if (Array.isArray(v)) {
    const turns = v.map((t, i) => parseTurn(rec, t, `${column}[${i}]`));
    if (!turns.length || turns[turns.length - 1]!.role !== 'user') throw new DataError(rec.location, `field "${column}" must end with a user turn`);
    return turns;
  }
  throw new DataError(rec.location, v === undefined ? `missing field "${column}"` : `field "${column}" must be a string or a list of messages`);
}

export async function prepareGrpoPrompts(
  path: string,
  tokenizer: Tokenizer,
  o: { template: PromptTemplate; maxPromptLength: number; column?: string; maxRecords?: number; skipBadRecords?: boolean },
): Promise<GrpoPromptData> {
  const read = await readRecords(path, { maxRecords: o.maxRecords, skipBadRecords: o.skipBadRecords });
  const first = read.records[0];
  if (!first) throw new DataError({ file: path }, 'no records');
  const column = o.column ?? GRPO_PROMPT_COLUMNS.find((c) => c in first.value);
  if (!column) throw new DataError(first.location, `no prompt column among fields (${Object.keys(first.value).join(', ')}); expected one of ${GRPO_PROMPT_COLUMNS.join(', ')} or pass --prompt_column`);
  // a chat template's text holds its own BOS (rendered with add_generation_prompt, as transformers renders prompts)
  const bos = !o.template.ownsSpecialTokens && tokenizerAddsBos(tokenizer) ? [tokenizer.bosTokenId!] : [];
  let truncated = 0;
  const { items, skipped, skippedExamples } = convertRecords(read, (rec) => {
    const messages = messagesOf(rec, column);
    let text: string;
    try {
      text = o.template.renderPrompt(messages);
    } catch (e) {
      throw new DataError(rec.location, `template "${o.template.name}": ${(e as Error).message}`);
    }
    let ids = [...bos, ...tokenizer.encode(text, { addSpecialTokens: false })];
    // Keep the end: it holds the request and the cue the answer follows.
    if (ids.length > o.maxPromptLength) {
      ids = ids.slice(ids.length - o.maxPromptLength);
      truncated++;
    }
    const extra = Object.fromEntries(Object.entries(rec.value).filter(([k]) => k !== column));
    const where = `${rec.location.file}${rec.location.line !== undefined ? `:${rec.location.line}` : ''}`;
    return { ids, text, extra, where };
  }, o.skipBadRecords);
  if (!items.length) throw new DataError({ file: path }, `no usable prompts (${skippedExamples[0]})`);
  return { prompts: items, column, skipped, skippedExamples, truncated };
}

export type LoaderFactory = <T, B>(items: readonly T[], opts: LoaderOptions<T, B>) => BatchLoader<T, B>;

/** Prompts in a reshuffled order every pass, resumable; a strategy's factory gives each rank its share. */
export function grpoPromptLoader(prompts: GrpoPrompt[], batchSize: number, seed: number, make: LoaderFactory): BatchLoader<GrpoPrompt, GrpoPrompt[]> {
  return make(prompts, { batchSize: Math.min(batchSize, prompts.length), shuffle: true, seed, collate: (rows) => rows });
}

/** Left-pads prompt ids, each repeated G times (rows grouped by prompt). */
export function repeatAndPad(prompts: GrpoPrompt[], G: number, padTokenId: number): { ids: number[][]; mask: number[][] } {
  const P = Math.max(...prompts.map((p) => p.ids.length));
  const ids: number[][] = [];
  const mask: number[][] = [];
  for (const p of prompts) {
    for (let g = 0; g < G; g++) {
      ids.push([...new Array<number>(P - p.ids.length).fill(padTokenId), ...p.ids]);
      mask.push([...new Array<number>(P - p.ids.length).fill(0), ...p.ids.map(() => 1)]);
    }
  }
  return { ids, mask };
}
