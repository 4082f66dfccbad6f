/** The prompt templates by name: `getTemplate('alpaca')`. */
import type { ChatSample } from '../types.js';
import { alpacaTemplate } from './alpaca.js';
import { chatmlTemplate } from './chatml.js';
import { humanAssistantTemplate } from './human_assistant.js';
import { plainTemplate } from './plain.js';
import type { PromptTemplate, RenderOptions, Segment } from './types.js';
import { zhDialogueTemplate } from './zh_dialogue.js';

export type { PromptTemplate, RenderOptions, Segment } from './types.js';
export { joinSegments } from './segments.js';
export { ALPACA_HEADER_NO_INPUT, ALPACA_HEADER_WITH_INPUT } from './alpaca.js';
export { ZH_DIALOGUE_HISTORY_TURNS } from './zh_dialogue.js';

const TEMPLATES = new Map<string, PromptTemplate>(
  [alpacaTemplate, chatmlTemplate, humanAssistantTemplate, plainTemplate, zhDialogueTemplate].map((t) => [t.name, t]),
);

export const TEMPLATE_NAMES: readonly string[] = [...TEMPLATES.keys()];

export function getTemplate(name: string): PromptTemplate {
  const template = TEMPLATES.get(name);
  if (!template) throw new Error(`Unknown prompt template "${name}"; available: ${TEMPLATE_NAMES.join(', ')}`);
  return template;
}

/** Render a normalized sample, passing along its alpaca fields. */
export function renderSample(template: PromptTemplate, sample: ChatSample, opts: RenderOptions = {}): Segment[] {
  return template.render(sample.messages, { alpaca: sample.alpaca, ...opts });
}
