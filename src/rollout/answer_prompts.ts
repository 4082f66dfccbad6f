/**
 * Answers to rendered prompts, in batches: left-pad, generate with a KV cache, cut each reply at EOS and at the
 * template's stop strings, decode. Shared by the commands that look at what a model says (labeling, judging).
 */
import { Rng } from '../engine/rng.js';
import { generate } from '../models/generation.js';
import type { DecoderModel } from '../models/decoder.js';
import type { SamplingOptions } from '../models/sampling.js';
import type { Tokenizer } from '../hub/tokenizer.js';

export interface AnswerOptions extends Partial<SamplingOptions> {
  maxNewTokens: number;
  /** Rows per generate call. */
  batchSize: number;
  /** Strings that end a reply besides EOS (the template's). */
  stop?: readonly string[];
  rng?: Rng;
}

/** Cuts a reply at the first of the stop strings. */
export function cutAtStop(text: string, stop: readonly string[] = []): string {
  let end = text.length;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

export interface Answer {
  /** Decoded, cut at a stop string, trimmed. */
  text: string;
  /** The generated token ids up to and including EOS. */
  ids: number[];
}

/** One answer per prompt (token ids, not padded), in order. */
export function answerPrompts(model: DecoderModel, tokenizer: Tokenizer, prompts: readonly number[][], o: AnswerOptions): Answer[] {
  const pad = tokenizer.padTokenId ?? model.config.padTokenId ?? tokenizer.eosTokenId ?? 0;
  const eos = tokenizer.eosTokenId ?? model.config.eosTokenId;
  const rng = o.rng ?? new Rng(0);
  const out: Answer[] = [];
  for (let start = 0; start < prompts.length; start += o.batchSize) {
    const rows = prompts.slice(start, start + o.batchSize);
    const P = Math.max(...rows.map((r) => r.length));
    const ids = rows.map((r) => [...new Array<number>(P - r.length).fill(pad), ...r]);
    const mask = rows.map((r) => [...new Array<number>(P - r.length).fill(0), ...r.map(() => 1)]);
    const g = generate(model, ids, mask, {
      maxNewTokens: o.maxNewTokens, doSample: o.doSample, temperature: o.temperature, topK: o.topK, topP: o.topP,
      repetitionPenalty: o.repetitionPenalty, eosTokenId: eos, padTokenId: pad, rng,
    });
    g.sequences.forEach((seq, b) => {
      const n = g.actionMask[b]!.reduce((a, v) => a + v, 0);
      const ids = seq.slice(P, P + n);
      out.push({ text: cutAtStop(tokenizer.decode(ids, { skipSpecialTokens: true }), o.stop).trim(), ids });
    });
  }
  return out;
}

/** Refuses a prompt + answer budget past the model's positions, naming the flags to lower. */
export function checkAnswerBudget(model: DecoderModel, dir: string, maxInputLen: number, maxNewTokens: number): void {
  const P = model.config.maxPositions;
  if (maxInputLen + maxNewTokens > P) {
    throw new Error(`prompt (--max_input_len ${maxInputLen}) + answer (--max_new_tokens ${maxNewTokens}) can reach ${maxInputLen + maxNewTokens} tokens but ${dir} has ${P} positions: lower them`);
  }
}
