/**
 * Stanford Alpaca's prompt, worded exactly as ColossalChat's PROMPT_DICT: a task header, "### Instruction:", an
 * optional "### Input:", then "### Response:" followed directly by the answer (the EOS the tokenizer stage appends
 * ends it). A system message replaces the header; earlier turns of a multi-turn conversation repeat the
 * Instruction/Response blocks.
 */
import type { ChatMessage } from '../types.js';
import { joinSegments, SegmentBuilder, splitConversation } from './segments.js';
import type { PromptTemplate, RenderOptions, Segment } from './types.js';

export const ALPACA_HEADER_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.';
export const ALPACA_HEADER_WITH_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.';

function build(messages: ChatMessage[], endsWith: 'user' | 'assistant', opts: RenderOptions): SegmentBuilder {
  const { system, exchanges } = splitConversation(messages, endsWith);
  const input = opts.alpaca?.input ?? '';
  const out = new SegmentBuilder();
  out.add((system ?? (input ? ALPACA_HEADER_WITH_INPUT : ALPACA_HEADER_NO_INPUT)) + '\n\n', false);
  exchanges.forEach((ex, i) => {
    const isLast = i === exchanges.length - 1;
    const instruction = isLast && opts.alpaca ? opts.alpaca.instruction : ex.user;
    const inputBlock = isLast && input ? `### Input:\n${input}\n\n` : '';
    out.add(`${i > 0 ? '\n\n' : ''}### Instruction:\n${instruction}\n\n${inputBlock}### Response:`, false);
    if (ex.assistant !== undefined) out.add(ex.assistant, true);
  });
  return out;
}

export const alpacaTemplate: PromptTemplate = {
  name: 'alpaca',
  stop: ['### Instruction:'],
  render(messages: ChatMessage[], opts: RenderOptions = {}): Segment[] {
    return build(messages, 'assistant', opts).build();
  },
  renderPrompt(messages: ChatMessage[], opts: RenderOptions = {}): string {
    return joinSegments(build(messages, 'user', opts).build());
  },
};
