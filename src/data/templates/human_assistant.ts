/**
 * Anthropic hh-rlhf's dialogue format: "\n\nHuman: question\n\nAssistant: answer". The space after "Assistant:"
 * belongs to the answer, as in the dataset (whose shared prompt ends at "\n\nAssistant:"). A system message, which
 * hh-rlhf never has, goes first as plain text. Turns are rendered one by one, so the odd hh-rlhf dialogue with two
 * Assistant turns in a row renders back exactly.
 */
import type { ChatMessage } from '../types.js';
import { checkTurns, joinSegments, SegmentBuilder } from './segments.js';
import type { PromptTemplate, Segment } from './types.js';

function build(messages: ChatMessage[], endsWith: 'user' | 'assistant'): SegmentBuilder {
  checkTurns(messages, endsWith);
  const out = new SegmentBuilder();
  for (const m of messages) {
    if (m.role === 'system') out.add(m.content, false);
    else if (m.role === 'user') out.add(`\n\nHuman: ${m.content}`, false);
    else out.add('\n\nAssistant:', false).add(` ${m.content}`, true);
  }
  if (endsWith === 'user') out.add('\n\nAssistant:', false);
  return out;
}

export const humanAssistantTemplate: PromptTemplate = {
  name: 'human_assistant',
  stop: ['\n\nHuman:'],
  render(messages: ChatMessage[]): Segment[] {
    return build(messages, 'assistant').build();
  },
  renderPrompt(messages: ChatMessage[]): string {
    return joinSegments(build(messages, 'user').build());
  },
};
