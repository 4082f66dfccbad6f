/**
 * A Chinese dialogue format with a short memory and optional retrieval: each retrieved passage on a
 * `检索知识:` line, then at most the last 3 earlier exchanges as `输入:…\n输出:…</s>`, then
 * `当前输入:…\n当前输出:` for the current turn. Earlier exchanges beyond the window are dropped.
 */
import type { ChatMessage } from '../types.js';
import { joinSegments, SegmentBuilder, splitConversation } from './segments.js';
import type { PromptTemplate, RenderOptions, Segment } from './types.js';

/** How many earlier exchanges are kept in front of the current one. */
export const ZH_DIALOGUE_HISTORY_TURNS = 3;

function build(messages: ChatMessage[], endsWith: 'user' | 'assistant', opts: RenderOptions): SegmentBuilder {
  const { system, exchanges } = splitConversation(messages, endsWith);
  const out = new SegmentBuilder();
  if (system !== undefined) out.add(`${system}\n`, false);
  for (const passage of opts.knowledge ?? []) out.add(`检索知识:${passage}\n`, false);
  const current = exchanges[exchanges.length - 1]!;
  const history = exchanges.slice(0, -1).slice(-ZH_DIALOGUE_HISTORY_TURNS);
  for (const ex of history) {
    out.add(`输入:${ex.user}\n输出:`, false);
    out.add(`${ex.assistant}</s>`, true);
  }
  out.add(`当前输入:${current.user}\n当前输出:`, false);
  if (current.assistant !== undefined) out.add(current.assistant, true);
  return out;
}

export const zhDialogueTemplate: PromptTemplate = {
  name: 'zh_dialogue',
  stop: ['</s>', '当前输入:'],
  render(messages: ChatMessage[], opts: RenderOptions = {}): Segment[] {
    return build(messages, 'assistant', opts).build();
  },
  renderPrompt(messages: ChatMessage[], opts: RenderOptions = {}): string {
    return joinSegments(build(messages, 'user', opts).build());
  },
};
