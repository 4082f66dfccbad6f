/** What every prompt template provides: training segments for a conversation, and a generation prompt. */
import type { AlpacaFields, ChatMessage } from '../types.js';

/** A piece of rendered text; `train` marks text the loss is computed on (assistant replies and their end marker). */
export interface Segment {
  text: string;
  train: boolean;
}

export interface RenderOptions {
  /** Retrieved passages to put before the dialogue (templates that support it: zh_dialogue). */
  knowledge?: string[];
  /** Alpaca's instruction/input for the last user turn (alpaca template: "with input" wording). */
  alpaca?: AlpacaFields;
}

export interface PromptTemplate {
  readonly name: string;
  /** A conversation ending with an assistant reply -> segments whose texts, joined, are the training text. */
  render(messages: ChatMessage[], opts?: RenderOptions): Segment[];
  /** A conversation ending with a user turn -> the text the model continues (for inference and PPO rollouts). */
  renderPrompt(messages: ChatMessage[], opts?: RenderOptions): string;
  /** Strings that end a reply when generating, besides the tokenizer's EOS. */
  readonly stop: readonly string[];
  /**
   * The rendered text carries its own special tokens (BOS, end-of-turn markers): it is tokenized as one text with
   * none added, as transformers tokenizes a chat template's output (the model's own `chat_template` does this).
   */
  readonly ownsSpecialTokens?: boolean;
}
