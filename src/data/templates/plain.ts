/**
 * No decoration: each turn's text on its own line(s), turns separated by a newline (for base models and quick
 * experiments). The newline after a user turn cues the reply, so it is part of the prompt.
 */
import type { ChatMessage } from '../types.js';
import { checkTurns, joinSegments, SegmentBuilder } from './segments.js';
import type { PromptTemplate, Segment } from './types.js';

function build(messages: ChatMessage[], endsWith: 'user' | 'assistant'): SegmentBuilder {
  checkTurns(messages, endsWith);
  const out = new SegmentBuilder();
  let afterReply = false;
  for (const m of messages) {
    if (m.role === 'assistant') out.add(`${afterReply ? '\n' : ''}`, false).add(m.content, true);
    else out.add(`${afterReply ? '\n' : ''}${m.content}\n`, false);
    afterReply = m.role === 'assistant';
  }
  return out;
}

export const plainTemplate: PromptTemplate = {
  name: 'plain',
  stop: [],
  render(messages: ChatMessage[]): Segment[] {
    return build(messages, 'assistant').build();
  },
  renderPrompt(messages: ChatMessage[]): string {
    return joinSegments(build(messages, 'user').build());
  },
};
