/** Field access with errors that name the record's location and the field, shared by every format parser. */
import { DataError } from './location.js';
import type { ChatMessage, LocatedRecord, Role } from './types.js';

/** A record, or an object nested in one (then `prefix`, e.g. "instances[2].", makes errors name the full path). */
export type FieldSource = LocatedRecord & { prefix?: string };

function fieldName(rec: FieldSource, field: string): string {
  return `${rec.prefix ?? ''}${field}`;
}

export function requireString(rec: FieldSource, field: string): string {
  const value = rec.value[field];
  const name = fieldName(rec, field);
  if (value === undefined || value === null) throw new DataError(rec.location, `missing field "${name}"`);
  if (typeof value !== 'string') throw new DataError(rec.location, `field "${name}" must be a string, got ${describe(value)}`);
  return value;
}

/** A string field that may be absent (null/undefined -> ''). */
export function optionalString(rec: FieldSource, field: string): string {
  const value = rec.value[field];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') {
    throw new DataError(rec.location, `field "${fieldName(rec, field)}" must be a string, got ${describe(value)}`);
  }
  return value;
}

export function requireArray(rec: FieldSource, field: string): unknown[] {
  const value = rec.value[field];
  const name = fieldName(rec, field);
  if (value === undefined || value === null) throw new DataError(rec.location, `missing field "${name}"`);
  if (!Array.isArray(value)) throw new DataError(rec.location, `field "${name}" must be an array, got ${describe(value)}`);
  return value;
}

/** ChatGLM/LLaMA-Factory `history`: [[question, answer], ...] -> alternating user/assistant messages. */
export function historyMessages(rec: LocatedRecord, field = 'history'): ChatMessage[] {
  const value = rec.value[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new DataError(rec.location, `field "${field}" must be an array of [question, answer] pairs`);
  const out: ChatMessage[] = [];
  value.forEach((pair, i) => {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
      throw new DataError(rec.location, `field "${field}[${i}]" must be a [question, answer] pair of strings`);
    }
    out.push({ role: 'user', content: pair[0] }, { role: 'assistant', content: pair[1] });
  });
  return out;
}

const SPEAKER_ROLES: Record<string, Role> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  chatgpt: 'assistant',
  bot: 'assistant',
  model: 'assistant',
  system: 'system',
};

/**
 * A turn object in ShareGPT style ({from, value}) or OpenAI style ({role, content}); `field` names it in errors,
 * e.g. `conversations[3]`.
 */
export function parseTurn(rec: LocatedRecord, turn: unknown, field: string): ChatMessage {
  if (turn === null || typeof turn !== 'object' || Array.isArray(turn)) {
    throw new DataError(rec.location, `field "${field}" must be an object like {"from": "human", "value": "..."}`);
  }
  const t = turn as Record<string, unknown>;
  const speakerKey = 'from' in t ? 'from' : 'role';
  const textKey = 'from' in t ? 'value' : 'content';
  const speaker = t[speakerKey];
  const text = t[textKey];
  if (typeof speaker !== 'string') throw new DataError(rec.location, `missing field "${field}.${speakerKey}"`);
  const role = SPEAKER_ROLES[speaker.toLowerCase()];
  if (!role) {
    throw new DataError(
      rec.location,
      `field "${field}.${speakerKey}" is "${speaker}"; expected one of ${Object.keys(SPEAKER_ROLES).join(', ')}`,
    );
  }
  if (typeof text !== 'string') throw new DataError(rec.location, `missing field "${field}.${textKey}"`);
  return { role, content: text };
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return value === null ? 'null' : typeof value;
}
