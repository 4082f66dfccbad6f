/**
 * ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message; the generation prompt is `<|im_start|>assistant\n`.
 * The `<|im_end|>` closing an assistant reply is trained (the model must learn to stop); the newline after it opens
 * the next turn.
 */
import type { ChatMessage } from '../types.js';
import { checkTurns, joinSegments, SegmentBuilder } from './segments.js';
import type { PromptTemplate, Segment } from './types.js';

function build(messages: ChatMessage[], endsWith: 'user' | 'assistant'): SegmentBuilder {
  checkTurns(messages, endsWith);
  const out = new SegmentBuilder();
  let afterReply = false;
  for (const m of messages) {
    const open = `${afterReply ? '\n' : ''}<|im_start|>${m.role}\n`;
    if (m.role === 'assistant') {
      out.add(open, false).add(`${m.content}<|im_end|>`, true);
    } else {
      out.add(`${open}${m.content}<|im_end|>\n`, false);
    }
    afterReply = m.role === 'assistant';
  }
  if (endsWith === 'user') out.add('<|im_start|>assistant\n', false);
  return out;
}

export const chatmlTemplate: PromptTemplate = {
  name: 'chatml',
  stop: ['<|im_end|>'],
  render(messages: ChatMessage[]): Segment[] {
    return build(messages, 'assistant').build();
  },
  renderPrompt(messages: ChatMessage[]): string {
    return joinSegments(build(messages, 'user').build());
  },
};
