/** Helpers the templates share: turn-order validation and segment accumulation. */
import type { ChatMessage } from '../types.js';
import type { Segment } from './types.js';

export interface Exchange {
  user: string;
  /** Undefined for the final user turn of a generation prompt. */
  assistant: string | undefined;
}

export interface SplitConversation {
  system: string | undefined;
  exchanges: Exchange[];
}

/**
 * Check what every template needs: a system message only in first place, at least one user turn, and the right
 * role last (`assistant` for training text, `user` for a generation prompt).
 */
export function checkTurns(messages: ChatMessage[], endsWith: 'user' | 'assistant'): void {
  messages.forEach((m, i) => {
    if (m.role === 'system' && i > 0) throw new Error(`message ${i} is a system message; only the first message may be one`);
  });
  if (!messages.some((m) => m.role === 'user')) throw new Error('the conversation has no user message');
  const last = messages[messages.length - 1];
  if (!last || last.role !== endsWith) {
    const what = endsWith === 'assistant' ? 'a conversation to train on' : 'a generation prompt';
    const got = last ? `"${last.role}"` : 'no messages';
    throw new Error(`${what} must end with ${endsWith === 'user' ? 'a user' : 'an assistant'} message, got ${got}`);
  }
}

/**
 * For templates built from question/answer blocks: check the turns and group them into exchanges. Consecutive turns
 * of the same role (real data has a few) are joined with a blank line; the first non-system turn must be a user's.
 */
export function splitConversation(messages: ChatMessage[], endsWith: 'user' | 'assistant'): SplitConversation {
  checkTurns(messages, endsWith);
  const system = messages[0]?.role === 'system' ? messages[0].content : undefined;
  const exchanges: Exchange[] = [];
  let prevRole: string | undefined;
  messages.forEach((m, i) => {
    if (m.role === 'system') return;
    const current = exchanges[exchanges.length - 1];
    if (m.role === 'user') {
      if (prevRole === 'user' && current) current.user += `\n\n${m.content}`;
      else exchanges.push({ user: m.content, assistant: undefined });
    } else {
      if (!current) throw new Error(`message ${i} is an assistant message before any user message`);
      current.assistant = current.assistant === undefined ? m.content : `${current.assistant}\n\n${m.content}`;
    }
    prevRole = m.role;
  });
  return { system, exchanges };
}

/** Accumulates segments, merging neighbours with the same `train` flag and dropping empty text. */
export class SegmentBuilder {
  private readonly segments: Segment[] = [];

  add(text: string, train: boolean): this {
    if (text === '') return this;
    const last = this.segments[this.segments.length - 1];
    if (last && last.train === train) last.text += text;
    else this.segments.push({ text, train });
    return this;
  }

  build(): Segment[] {
    return this.segments.map((s) => ({ ...s }));
  }
}

export function joinSegments(segments: Segment[]): string {
  return segments.map((s) => s.text).join('');
}
