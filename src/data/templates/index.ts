/** The prompt templates by name: `getTemplate('alpaca')`. */
import type { ChatSample } from '../types.js';
import { alpacaTemplate } from './alpaca.js';
import { chatmlTemplate } from './chatml.js';
import { humanAssistantTemplate } from './human_assistant.js';
import { plainTemplate } from './plain.js';
import type { PromptTemplate, RenderOptions, Segment } from './types.js';
import { zhDialogueTemplate } from './zh_dialogue.js';
import { CHAT_TEMPLATE_NAME, chatTemplateOf, type ChatTemplateHolder } from './chat_template.js';
import { recordedTemplate } from './recorded.js';

export type { PromptTemplate, RenderOptions, Segment } from './types.js';
export { joinSegments } from './segments.js';
export { ALPACA_HEADER_NO_INPUT, ALPACA_HEADER_WITH_INPUT } from './alpaca.js';
export { ZH_DIALOGUE_HISTORY_TURNS } from './zh_dialogue.js';
export { recordedTemplate } from './recorded.js';
export { CHAT_TEMPLATE_NAME, ChatTemplate, chatTemplateOf, strftime, type ChatTemplateHolder, type ChatTemplateSource } from './chat_template.js';

const TEMPLATES = new Map<string, PromptTemplate>(
  [alpacaTemplate, chatmlTemplate, humanAssistantTemplate, plainTemplate, zhDialogueTemplate].map((t) => [t.name, t]),
);

export const TEMPLATE_NAMES: readonly string[] = [...TEMPLATES.keys()];

/** `--prompt_template auto` (what no flag means): the model's chat template when it has one, else the stage's default. */
export const AUTO_TEMPLATE = 'auto';

/** Every value `--prompt_template` accepts. */
export const PROMPT_TEMPLATE_CHOICES: readonly string[] = [...TEMPLATE_NAMES, CHAT_TEMPLATE_NAME, AUTO_TEMPLATE];

export interface ResolvedTemplate {
  template: PromptTemplate;
  /** One line saying which template is used and why, for the run log. */
  note: string;
}

/**
 * The template a run uses: `chat_template` is the model's own (an error when its tokenizer has none); any other name
 * is a built-in template; `auto` or no name takes, in order, the template `modelDir`'s training run recorded (a model
 * fine-tuned in one template keeps it), the tokenizer's chat template, then `fallback`.
 */
export function resolvePromptTemplate(name: string | undefined, tokenizer: ChatTemplateHolder, fallback: string, modelDir?: string): ResolvedTemplate {
  if (name === undefined || name === AUTO_TEMPLATE) {
    const recorded = modelDir === undefined ? null : recordedTemplate(modelDir);
    if (recorded !== null && recorded !== CHAT_TEMPLATE_NAME) {
      return { template: getTemplate(recorded), note: `prompt template: ${recorded} (the one ${modelDir} was trained with)` };
    }
  }
  const own = name === CHAT_TEMPLATE_NAME || name === undefined || name === AUTO_TEMPLATE ? chatTemplateOf(tokenizer) : null;
  if (name === CHAT_TEMPLATE_NAME && !own) {
    throw new Error('--prompt_template chat_template: the tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)');
  }
  if (own) {
    const why = name === CHAT_TEMPLATE_NAME ? '' : ', the model has one and no --prompt_template was given';
    return { template: own, note: `prompt template: the model's chat_template (${tokenizer.chatTemplateSource}${why})` };
  }
  if (name === undefined || name === AUTO_TEMPLATE) {
    return { template: getTemplate(fallback), note: `prompt template: ${fallback} (the model has no chat template)` };
  }
  return { template: getTemplate(name), note: `prompt template: ${name}` };
}

export function getTemplate(name: string): PromptTemplate {
  const template = TEMPLATES.get(name);
  if (!template) throw new Error(`Unknown prompt template "${name}"; available: ${TEMPLATE_NAMES.join(', ')}`);
  return template;
}

/** Render a normalized sample, passing along its alpaca fields. */
export function renderSample(template: PromptTemplate, sample: ChatSample, opts: RenderOptions = {}): Segment[] {
  return template.render(sample.messages, { alpaca: sample.alpaca, ...opts });
}
