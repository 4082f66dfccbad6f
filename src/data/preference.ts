/**
 * Preference datasets -> `{prompt: messages, chosen, rejected}` pairs for reward modelling (and DPO).
 *
 * | format     | fields                                                                          |
 * |------------|---------------------------------------------------------------------------------|
 * | hh_rlhf    | chosen, rejected: whole dialogues "\n\nHuman: ...\n\nAssistant: ..." (Anthropic) |
 * | rm_static  | prompt ("\n\nHuman: ...\n\nAssistant:"), chosen, rejected (response ignored)     |
 * | sharegpt   | conversations[{from, value}], chosen {from, value}, rejected {from, value}      |
 * | conversational | TRL's conversational format: prompt [{role, content}], chosen/rejected [{role, content}] |
 * |            | (or no prompt: chosen/rejected are whole conversations sharing it, as UltraFeedback-binarized) |
 * | unpaired   | TRL's unpaired format (KTO): prompt, completion (strings or message lists), label true/false |
 *
 * TRL's standard format (prompt/chosen/rejected strings) is rm_static's layout and read as such.
 * Replies are stored without the single space that follows "Assistant:" in hh-rlhf text: the human_assistant
 * template puts it back, so rendering a pair reproduces the original dialogue.
 */
import { DataError, type RecordLocation } from './location.js';
import { optionalString, parseTurn, requireArray, requireString } from './fields.js';
import { convertRecords, readRecords, type ReadOptions } from './readers.js';
import type { ChatMessage, LocatedRecord } from './types.js';

export interface PreferencePair {
  /** The shared conversation, ending with a user turn. */
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
  location?: RecordLocation;
}

export type PreferenceFormat = 'hh_rlhf' | 'rm_static' | 'sharegpt' | 'conversational';

const ASSISTANT_MARK = '\n\nAssistant:';
const TURN_MARKS = /\n\n(Human|Assistant):/g;

export function detectPreferenceFormat(first: LocatedRecord): PreferenceFormat {
  const has = (k: string): boolean => k in first.value;
  if (has('conversations')) return 'sharegpt';
  if (Array.isArray(first.value.prompt) || Array.isArray(first.value.chosen)) return 'conversational';
  if (has('prompt')) return 'rm_static';
  if (has('chosen') || has('rejected')) return 'hh_rlhf';
  throw new DataError(
    first.location,
    `not a preference record: fields (${Object.keys(first.value).join(', ')}); expected chosen/rejected ` +
      '(hh-rlhf), prompt/chosen/rejected (rm-static, TRL standard or conversational) or conversations/chosen/rejected (ShareGPT)',
  );
}

export function normalizePreferenceRecord(rec: LocatedRecord, format: PreferenceFormat): PreferencePair {
  const location = rec.location;
  switch (format) {
    case 'hh_rlhf': {
      const split = splitSharedPrompt(requireString(rec, 'chosen'), requireString(rec, 'rejected'));
      if (!split) throw new DataError(location, `fields "chosen" and "rejected" share no "\\n\\nAssistant:" turn`);
      const prompt = checkedPrompt(rec, parseHumanAssistantDialogue(split.prompt));
      return { prompt, chosen: split.chosen, rejected: split.rejected, location };
    }
    case 'rm_static':
      return {
        prompt: checkedPrompt(rec, parseHumanAssistantDialogue(requireString(rec, 'prompt'))),
        chosen: dropLeadingSpace(requireString(rec, 'chosen')),
        rejected: dropLeadingSpace(requireString(rec, 'rejected')),
        location,
      };
    case 'sharegpt': {
      const prompt = requireArray(rec, 'conversations').map((t, i) => parseTurn(rec, t, `conversations[${i}]`));
      const system = optionalString(rec, 'system');
      if (system && prompt[0]?.role !== 'system') prompt.unshift({ role: 'system', content: system });
      return {
        prompt: checkedPrompt(rec, prompt),
        chosen: replyText(rec, 'chosen'),
        rejected: replyText(rec, 'rejected'),
        location,
      };
    }
    case 'conversational': {
      const chosen = messageList(rec, 'chosen');
      const rejected = messageList(rec, 'rejected');
      let prompt: ChatMessage[];
      if (rec.value.prompt === undefined || rec.value.prompt === null) {
        // implicit prompt: the turns both conversations share
        let k = 0;
        while (k < chosen.length - 1 && k < rejected.length - 1 && sameMessage(chosen[k]!, rejected[k]!)) k++;
        prompt = chosen.slice(0, k);
        return { prompt: checkedPrompt(rec, prompt), chosen: singleReply(rec, 'chosen', chosen.slice(k)), rejected: singleReply(rec, 'rejected', rejected.slice(k)), location };
      }
      prompt = messageList(rec, 'prompt');
      return { prompt: checkedPrompt(rec, prompt), chosen: singleReply(rec, 'chosen', chosen), rejected: singleReply(rec, 'rejected', rejected), location };
    }
  }
}

/** A field holding a message list ([{role, content}] or ShareGPT turns). */
function messageList(rec: LocatedRecord, field: string): ChatMessage[] {
  return requireArray(rec, field).map((t, i) => parseTurn(rec, t, `${field}[${i}]`));
}

function sameMessage(a: ChatMessage, b: ChatMessage): boolean {
  return a.role === b.role && a.content === b.content;
}

/** The one assistant reply a completion list must hold. */
function singleReply(rec: LocatedRecord, field: string, turns: ChatMessage[]): string {
  if (turns.length !== 1 || turns[0]!.role !== 'assistant') {
    throw new DataError(rec.location, `field "${field}" must end in exactly one assistant message after the prompt, got ${turns.map((t) => t.role).join(', ') || 'none'}`);
  }
  return turns[0]!.content;
}

/** One completion with a desirable (true) / undesirable (false) label: KTO's unit of data. */
export interface UnpairedExample {
  prompt: ChatMessage[];
  completion: string;
  desirable: boolean;
  location?: RecordLocation;
}

export interface UnpairedLoadResult {
  /** 'unpaired', or the paired format that was split into two examples per pair (TRL's unpair_preference_dataset). */
  format: 'unpaired' | PreferenceFormat;
  examples: UnpairedExample[];
  skipped: number;
  skippedExamples: string[];
}

/** TRL's unpaired record: prompt and completion (strings or message lists) and a boolean label. */
export function normalizeUnpairedRecord(rec: LocatedRecord): UnpairedExample {
  const label = rec.value.label;
  if (typeof label !== 'boolean') throw new DataError(rec.location, `field "label" must be true or false, got ${JSON.stringify(label)}`);
  const promptValue = rec.value.prompt;
  const prompt = Array.isArray(promptValue) ? messageList(rec, 'prompt') : parseHumanAssistantDialogue(requireString(rec, 'prompt'));
  const completion = Array.isArray(rec.value.completion) ? singleReply(rec, 'completion', messageList(rec, 'completion')) : requireString(rec, 'completion');
  return { prompt: checkedPrompt(rec, prompt), completion, desirable: label, location: rec.location };
}

/**
 * Unpaired examples for KTO: TRL's unpaired records as they are, or any preference file with each pair split into
 * its chosen (desirable) and rejected (undesirable) completion.
 */
export async function loadUnpairedExamples(path: string, opts: ReadOptions = {}): Promise<UnpairedLoadResult> {
  const read = await readRecords(path, opts);
  const first = read.records[0]!;
  if ('completion' in first.value && 'label' in first.value) {
    const r = convertRecords(read, normalizeUnpairedRecord, opts.skipBadRecords);
    if (r.items.length === 0) throw new DataError({ file: path }, `no usable examples (${r.skippedExamples[0]})`);
    return { format: 'unpaired', examples: r.items, skipped: r.skipped, skippedExamples: r.skippedExamples };
  }
  const format = detectPreferenceFormat(first);
  const r = convertRecords(read, (rec) => normalizePreferenceRecord(rec, format), opts.skipBadRecords);
  if (r.items.length === 0) throw new DataError({ file: path }, `no usable preference pairs (${r.skippedExamples[0]})`);
  const examples = r.items.flatMap((p): UnpairedExample[] => [
    { prompt: p.prompt, completion: p.chosen, desirable: true, location: p.location },
    { prompt: p.prompt, completion: p.rejected, desirable: false, location: p.location },
  ]);
  return { format, examples, skipped: r.skipped, skippedExamples: r.skippedExamples };
}

/**
 * Split two hh-rlhf dialogues into the prompt they share and the two answers: at the LAST "\n\nAssistant:" that
 * both strings contain at the same place (prompt = everything up to and including it). Usually that is simply the
 * last one; a few hh-rlhf answers themselves contain "\n\nAssistant:", and then the shared one is the right cut.
 */
export function splitSharedPrompt(
  chosen: string,
  rejected: string,
): { prompt: string; chosen: string; rejected: string } | undefined {
  let common = 0;
  const limit = Math.min(chosen.length, rejected.length);
  while (common < limit && chosen.charCodeAt(common) === rejected.charCodeAt(common)) common++;
  const cut = chosen.lastIndexOf(ASSISTANT_MARK, common - ASSISTANT_MARK.length);
  if (cut < 0 || common < ASSISTANT_MARK.length) return undefined;
  const end = cut + ASSISTANT_MARK.length;
  return {
    prompt: chosen.slice(0, end),
    chosen: dropLeadingSpace(chosen.slice(end)),
    rejected: dropLeadingSpace(rejected.slice(end)),
  };
}

/**
 * "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:" -> user/assistant messages. A trailing empty
 * "Assistant:" (the generation slot) is dropped; text before the first marker becomes a system message; text with no
 * markers at all is one user message.
 */
export function parseHumanAssistantDialogue(text: string): ChatMessage[] {
  const marks = [...text.matchAll(TURN_MARKS)];
  if (marks.length === 0) return [{ role: 'user', content: text }];
  const messages: ChatMessage[] = [];
  const preamble = text.slice(0, marks[0]!.index);
  if (preamble.trim() !== '') messages.push({ role: 'system', content: preamble.trim() });
  marks.forEach((m, i) => {
    const start = m.index! + m[0].length;
    const end = i + 1 < marks.length ? marks[i + 1]!.index! : text.length;
    const content = dropLeadingSpace(text.slice(start, end));
    const role = m[1] === 'Human' ? 'user' : 'assistant';
    const isGenerationSlot = role === 'assistant' && i === marks.length - 1 && content.trim() === '';
    if (!isGenerationSlot) messages.push({ role, content });
  });
  return messages;
}

export interface PreferenceLoadResult {
  format: PreferenceFormat;
  pairs: PreferencePair[];
  skipped: number;
  skippedExamples: string[];
}

export async function loadPreferencePairs(
  path: string,
  opts: ReadOptions & { format?: PreferenceFormat } = {},
): Promise<PreferenceLoadResult> {
  const read = await readRecords(path, opts);
  const format = opts.format ?? detectPreferenceFormat(read.records[0]!);
  const { items: pairs, skipped, skippedExamples } = convertRecords(read, (rec) => normalizePreferenceRecord(rec, format), opts.skipBadRecords);
  if (pairs.length === 0) throw new DataError({ file: path }, `no usable preference pairs (${skippedExamples[0]})`);
  return { format, pairs, skipped, skippedExamples };
}

function replyText(rec: LocatedRecord, field: 'chosen' | 'rejected'): string {
  const value = rec.value[field];
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) throw new DataError(rec.location, `missing field "${field}"`);
  const turn = parseTurn(rec, value, field);
  if (turn.role !== 'assistant') throw new DataError(rec.location, `field "${field}" must be an assistant (gpt) turn`);
  return turn.content;
}

function checkedPrompt(rec: LocatedRecord, prompt: ChatMessage[]): ChatMessage[] {
  const last = prompt[prompt.length - 1];
  if (!last || last.role !== 'user') {
    throw new DataError(rec.location, `the prompt must end with a user (human) turn, got ${last ? last.role : 'nothing'}`);
  }
  return prompt;
}

function dropLeadingSpace(text: string): string {
  return text.startsWith(' ') ? text.slice(1) : text;
}
