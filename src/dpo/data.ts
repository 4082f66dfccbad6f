/**
 * Preference data → token sequences for DPO-family training, and batches of them.
 *
 * A completion is [BOS if the tokenizer adds one] + the prompt as the template renders it + the answer + EOS, the
 * prompt and the answer encoded apart (src/data/pair_tokens.ts), fitted into maxLen by keeping the prompt's end and
 * the answer's start (counted). Only the answer's tokens are scored. Pairs whose two answers are the same tokens are
 * dropped (counted): they carry no preference.
 *
 * KTO's examples are single completions with a label; each also gets a mismatched completion (another example's
 * answer after its prompt) for the KL baseline: after a seeded shuffle, within each run of `batchSize` examples the
 * answers are rotated by one, as TRL's KTOTrainer builds its KL dataset (before the loader shuffles again). Fixing
 * the mismatched sample per example lets --precompute_ref_log_probs score it once.
 */
import { Rng } from '../engine/rng.js';
import type { RecordLocation } from '../data/location.js';
import { fitPromptAnswer, renderPairSide } from '../data/pair_tokens.js';
import type { PreferencePair, UnpairedExample } from '../data/preference.js';
import type { PromptTemplate } from '../data/templates/index.js';
import type { TextEncoderLike } from '../data/sft_samples.js';
import type { CompletionBatch } from '../models/sequence_logprobs.js';

/** Prompt tokens (with BOS) and answer tokens (with EOS unless cut) of one sequence. */
export interface Completion {
  prompt: number[];
  answer: number[];
}

export interface DpoPair {
  chosen: Completion;
  rejected: Completion;
  location?: RecordLocation;
  /** The reference's summed log-probs, when precomputed. */
  refChosen?: number;
  refRejected?: number;
}

export interface KtoExample {
  completion: Completion;
  desirable: boolean;
  /** The same prompt with another example's answer (the KL baseline's sample). */
  kl: Completion;
  location?: RecordLocation;
  ref?: number;
  refKl?: number;
}

export interface TokenizeOptions {
  maxLen: number;
  addBos?: boolean;
}

export interface TokenizeStats {
  /** Items kept (pairs, or kto examples). */
  items: number;
  /** Sequences whose prompt lost tokens on the left. */
  promptTruncated: number;
  /** Sequences whose answer lost tokens on the right (and so its EOS). */
  answerTruncated: number;
  /** Pairs dropped because both answers were the same tokens. */
  droppedIdentical: number;
  tokens: number;
}

function newStats(): TokenizeStats {
  return { items: 0, promptTruncated: 0, answerTruncated: 0, droppedIdentical: 0, tokens: 0 };
}

function completionEncoder(template: PromptTemplate, tokenizer: TextEncoderLike, opts: TokenizeOptions, stats: TokenizeStats) {
  const bos = opts.addBos && tokenizer.bosTokenId !== null ? [tokenizer.bosTokenId] : [];
  const eos = tokenizer.eosTokenId;
  return (item: { prompt: PreferencePair['prompt']; location?: RecordLocation }, answerText: string): Completion => {
    const side = renderPairSide(template, item, answerText);
    const prompt = tokenizer.encode(side.prompt, { addSpecialTokens: false });
    const answer = tokenizer.encode(side.answer, { addSpecialTokens: false });
    if (eos !== null && answer[answer.length - 1] !== eos) answer.push(eos); // TRL ends every completion with EOS
    const fit = fitPromptAnswer(bos, prompt, answer, opts.maxLen);
    if (fit.promptCut) stats.promptTruncated++;
    if (fit.answerCut) stats.answerTruncated++;
    return { prompt: fit.prompt, answer: fit.answer };
  };
}

const sameIds = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Renders, tokenizes and fits preference pairs; errors name the pair's file and record. */
export function tokenizeDpoPairs(pairs: readonly PreferencePair[], template: PromptTemplate, tokenizer: TextEncoderLike, opts: TokenizeOptions): { items: DpoPair[]; stats: TokenizeStats } {
  const stats = newStats();
  const encode = completionEncoder(template, tokenizer, opts, stats);
  const items: DpoPair[] = [];
  for (const pair of pairs) {
    const chosen = encode(pair, pair.chosen);
    const rejected = encode(pair, pair.rejected);
    if (sameIds(chosen.answer, rejected.answer)) {
      stats.droppedIdentical++;
      continue;
    }
    items.push({ chosen, rejected, location: pair.location });
    stats.items++;
    stats.tokens += chosen.prompt.length + chosen.answer.length + rejected.prompt.length + rejected.answer.length;
  }
  return { items, stats };
}

/** Renders and tokenizes KTO examples and pairs each with its KL sample (see the file comment). */
export function tokenizeKtoExamples(
  examples: readonly UnpairedExample[], template: PromptTemplate, tokenizer: TextEncoderLike, opts: TokenizeOptions & { batchSize: number; seed: number },
): { items: KtoExample[]; stats: TokenizeStats } {
  const stats = newStats();
  const encode = completionEncoder(template, tokenizer, opts, stats);
  const encoded = examples.map((e) => ({ completion: encode(e, e.completion), desirable: e.desirable, location: e.location }));
  const order = new Rng(opts.seed ^ 0x6b1).permutation(encoded.length);
  const items: KtoExample[] = new Array(encoded.length);
  for (let g = 0; g < order.length; g += opts.batchSize) {
    const group = order.slice(g, g + opts.batchSize);
    group.forEach((idx, j) => {
      const e = encoded[idx]!;
      const other = encoded[group[(j + group.length - 1) % group.length]!]!.completion.answer;
      const fit = fitPromptAnswer([], e.completion.prompt, other, opts.maxLen);
      items[idx] = { ...e, kl: { prompt: fit.prompt, answer: fit.answer } };
    });
  }
  for (const it of items) stats.tokens += it.completion.prompt.length + it.completion.answer.length;
  stats.items = items.length;
  return { items, stats };
}

/** Completions as one right-padded batch, the answer tokens marked. */
export function collateCompletions(rows: readonly Completion[], padTokenId: number): CompletionBatch & { tokens: number } {
  const T = Math.max(...rows.map((r) => r.prompt.length + r.answer.length));
  const batch: CompletionBatch & { tokens: number } = { inputIds: [], attentionMask: [], completionMask: [], tokens: 0 };
  for (const r of rows) {
    const n = r.prompt.length + r.answer.length;
    const pad = T - n;
    batch.inputIds.push([...r.prompt, ...r.answer, ...new Array<number>(pad).fill(padTokenId)]);
    batch.attentionMask.push([...new Array<number>(n).fill(1), ...new Array<number>(pad).fill(0)]);
    batch.completionMask.push([...new Array<number>(r.prompt.length).fill(0), ...new Array<number>(r.answer.length).fill(1), ...new Array<number>(pad).fill(0)]);
    batch.tokens += n;
  }
  return batch;
}

/** B pairs: rows 0..B−1 the chosen completions, rows B..2B−1 the rejected. */
export interface PairBatch {
  kind: 'pairs';
  items: DpoPair[];
  sequences: CompletionBatch & { tokens: number };
}

/** M kto examples: rows 0..M−1 the completions, rows M..2M−1 their KL samples. */
export interface KtoBatch {
  kind: 'kto';
  items: KtoExample[];
  sequences: CompletionBatch & { tokens: number };
}

export type DpoBatch = PairBatch | KtoBatch;

export function collateDpoPairs(items: readonly DpoPair[], padTokenId: number): PairBatch {
  return { kind: 'pairs', items: [...items], sequences: collateCompletions([...items.map((p) => p.chosen), ...items.map((p) => p.rejected)], padTokenId) };
}

export function collateKto(items: readonly KtoExample[], padTokenId: number): KtoBatch {
  return { kind: 'kto', items: [...items], sequences: collateCompletions([...items.map((e) => e.completion), ...items.map((e) => e.kl)], padTokenId) };
}
