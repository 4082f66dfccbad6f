/** The shapes every dataset is normalized into, whatever its file format or field names. */
import type { RecordLocation } from './location.js';

export type { RecordLocation } from './location.js';

/** One raw record as read from a file (a JSON object, a CSV row keyed by header, an Arrow row). */
export type DataRecord = Record<string, unknown>;

export interface LocatedRecord {
  value: DataRecord;
  location: RecordLocation;
}

export type Role = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

/**
 * Alpaca's two prompt fields for the LAST user turn, kept apart because the alpaca template words a prompt with an
 * input differently ("...paired with an input that provides further context..."). The user message's `content` still
 * holds the joined text (`instruction\n\ninput`) so templates that do not care can ignore this.
 */
export interface AlpacaFields {
  instruction: string;
  input: string;
}

/** A conversation: for SFT it ends with an assistant reply; as a prompt it ends with a user turn. */
export interface ChatSample {
  messages: ChatMessage[];
  alpaca?: AlpacaFields;
  location?: RecordLocation;
}

/** Plain text for (continued) pretraining. */
export interface TextSample {
  text: string;
  location?: RecordLocation;
}

export type Sample = ChatSample | TextSample;

export function isChatSample(sample: Sample): sample is ChatSample {
  return 'messages' in sample;
}
