/**
 * What `inference` checks before generating, as the trainers do before training: the tokenizer's ids fit the model's
 * embedding, and prompt + new tokens fit the model's positions. Errors say which flag to change, instead of a raw
 * tensor error (a GatherV2 index out of range) in the middle of generation.
 */
import type { ModelConfig } from '../models/config.js';

/** The tokenizer must not produce ids past the model's embedding rows. */
export function checkTokenizerFitsModel(tokenizerVocab: number, config: ModelConfig, modelDir: string): void {
  if (tokenizerVocab > config.vocabSize) {
    throw new Error(
      `the tokenizer has ${tokenizerVocab} tokens but the model ${modelDir} embeds only ${config.vocabSize}: ` +
        'pass the model\'s own tokenizer (--tokenizer), or a model trained with this one',
    );
  }
}

export interface LengthOptions {
  maxNewTokens?: number;
  maxLength?: number;
}

/** Prompt ids must be known to the model, and the prompt plus what is generated must fit its position table. */
export function checkPromptFits(inputIds: number[], config: ModelConfig, o: LengthOptions): void {
  const bad = inputIds.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= config.vocabSize);
  if (bad >= 0) {
    throw new Error(
      `the input encodes to token id ${inputIds[bad]} (position ${bad}), past the model's ${config.vocabSize} embedding rows: ` +
        'tokenizer and model disagree; pass the model\'s own tokenizer (--tokenizer)',
    );
  }
  const limit = config.maxPositions;
  if (!Number.isFinite(limit)) return; // ALiBi: no position table
  const P = inputIds.length;
  if (P >= limit) {
    throw new Error(
      `the input is ${P} tokens, but the model has ${limit} positions and needs room for at least one new token: ` +
        'shorten --input (and --history)',
    );
  }
  if (o.maxLength !== undefined) {
    if (o.maxLength > limit) throw new Error(`--max_length ${o.maxLength} exceeds the model's ${limit} positions: use --max_length ${limit} or less`);
    return;
  }
  const maxNew = o.maxNewTokens ?? 20;
  if (P + maxNew > limit) {
    throw new Error(
      `the input is ${P} tokens and --max_new_tokens ${maxNew} asks for ${maxNew} more, past the model's ${limit} positions: ` +
        `lower --max_new_tokens to ${limit - P} or less (or shorten the input)`,
    );
  }
}
