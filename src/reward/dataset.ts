/**
 * Preference pairs → token sequences for the reward model, and batches of them.
 *
 * Each side of a pair is one sequence: [BOS if the tokenizer adds one] + prompt rendered by the template (ending in
 * the template's cue for the answer) + the answer + EOS. The prompt and the answer are encoded separately, so no
 * token straddles them and the answer's tokens are the same in every context.
 *
 * Truncation to `maxLen` (counted in the stats), chosen so the reward still sees what it must compare:
 *   1. If the sequence fits, nothing is cut.
 *   2. Otherwise the PROMPT loses tokens from its LEFT (the oldest turns matter least) until the answer fits whole,
 *      but the prompt keeps at least its last ⌊room/2⌋ tokens (room = maxLen − BOS).
 *   3. If the answer is still too long, the ANSWER is cut on its RIGHT (losing its EOS); its reward is then read at
 *      the last kept token.
 */
import type { RecordLocation } from '../data/location.js';
import { fitPromptAnswer, renderPairSide } from '../data/pair_tokens.js';
import type { PreferencePair } from '../data/preference.js';
import { loadPreferencePairs } from '../data/preference.js';
import { splitTrainVal } from '../data/split.js';
import { heldOutSplit } from '../data/dataset_splits.js';
import { padBatch } from '../data/batching.js';
import { answerMaskRows } from '../models/value_model.js';
import type { PromptTemplate } from '../data/templates/index.js';
import type { TextEncoderLike } from '../data/sft_samples.js';
import type { RewardConfig } from './config.js';
import { TEST_SUBSET } from './config.js';

// Shared with the other pair-based stages; re-exported where they were first defined.
export { fitSequence, renderPairSide, tokenizerAddsBos } from '../data/pair_tokens.js';

export interface TokenizedPair {
  chosen: number[];
  rejected: number[];
  /** Tokens before each side's answer (BOS + prompt after fitting): what the answer-only reductions leave out. */
  chosenPromptLen?: number;
  rejectedPromptLen?: number;
  location?: RecordLocation;
}

export interface PairTokenizeOptions {
  maxLen: number;
  /** Put BOS first (see `tokenizerAddsBos`). Default false. */
  addBos?: boolean;
}

export interface PairTokenizeStats {
  /** Pairs kept. */
  pairs: number;
  /** Sequences (two per pair) whose prompt lost tokens on the left. */
  promptTruncated: number;
  /** Sequences whose answer lost tokens on the right (and so its EOS). */
  answerTruncated: number;
  /** Pairs dropped because chosen and rejected were the same tokens after truncation (nothing to learn). */
  droppedIdentical: number;
  /** Tokens in all kept sequences. */
  tokens: number;
}

/**
 * One scored sequence: the prompt conversation and an answer, rendered and fitted into maxLen as the file comment says
 * (what train_reward_model trains on and `score` scores). A chat template's text is tokenized whole, as the policy's
 * rollouts are, and holds its own special tokens; a built-in template's gets BOS (opts.addBos) and a closing EOS.
 */
export function encodeRewardSequence(
  template: PromptTemplate,
  conversation: Pick<PreferencePair, 'prompt' | 'location'>,
  answerText: string,
  tokenizer: TextEncoderLike,
  opts: PairTokenizeOptions,
): { ids: number[]; promptLen: number; promptCut: boolean; answerCut: boolean } {
  const side = renderPairSide(template, conversation, answerText);
  let prompt = tokenizer.encode(side.prompt, { addSpecialTokens: false });
  let answer: number[];
  let bos: number[] = [];
  if (template.ownsSpecialTokens) {
    const ids = tokenizer.encode(side.prompt + side.answer, { addSpecialTokens: false });
    let k = 0;
    while (k < prompt.length && k < ids.length && prompt[k] === ids[k]) k++;
    [prompt, answer] = [ids.slice(0, k), ids.slice(k)];
  } else {
    answer = tokenizer.encode(side.answer, { addSpecialTokens: false });
    // EOS closes the answer: the position the reward is read at has then seen the answer end.
    const eos = tokenizer.eosTokenId;
    if (eos !== null && answer[answer.length - 1] !== eos) answer.push(eos);
    if (opts.addBos && tokenizer.bosTokenId !== null) bos = [tokenizer.bosTokenId];
  }
  const fit = fitPromptAnswer(bos, prompt, answer, opts.maxLen);
  return { ids: [...fit.prompt, ...fit.answer], promptLen: fit.prompt.length, promptCut: fit.promptCut, answerCut: fit.answerCut };
}

/** Renders and tokenizes pairs; errors name the pair's file and record. */
export function tokenizePreferencePairs(
  pairs: readonly PreferencePair[],
  template: PromptTemplate,
  tokenizer: TextEncoderLike,
  opts: PairTokenizeOptions,
): { pairs: TokenizedPair[]; stats: PairTokenizeStats } {
  const stats: PairTokenizeStats = { pairs: 0, promptTruncated: 0, answerTruncated: 0, droppedIdentical: 0, tokens: 0 };
  const out: TokenizedPair[] = [];
  const encodeSide = (pair: PreferencePair, answerText: string) => {
    const fit = encodeRewardSequence(template, pair, answerText, tokenizer, opts);
    if (fit.promptCut) stats.promptTruncated++;
    if (fit.answerCut) stats.answerTruncated++;
    return fit;
  };
  for (const pair of pairs) {
    const { ids: chosen, promptLen: chosenPromptLen } = encodeSide(pair, pair.chosen);
    const { ids: rejected, promptLen: rejectedPromptLen } = encodeSide(pair, pair.rejected);
    if (chosen.length === rejected.length && chosen.every((id, i) => id === rejected[i])) {
      stats.droppedIdentical++;
      continue;
    }
    out.push({ chosen, rejected, chosenPromptLen, rejectedPromptLen, location: pair.location });
    stats.pairs++;
    stats.tokens += chosen.length + rejected.length;
  }
  return { pairs: out, stats };
}

/**
 * B pairs as one right-padded batch: each distinct sequence once (pairs of one prompt share answers: k ranked answers
 * give up to k(k−1)/2 pairs from k rows), chosenRows[i] / rejectedRows[i] the rows of pair i's two sides. Without
 * repeats that is 2B rows, the chosen sequences first, then the rejected.
 */
export interface PairBatch {
  inputIds: number[][];
  chosenRows: number[];
  rejectedRows: number[];
  attentionMask: number[][];
  /** 1 on each row's answer tokens (for the answer-only reductions); absent when a pair does not know its prompt's length. */
  answerMask?: number[][];
  /** Pairs in the batch (B). */
  pairs: number;
  /** Real (unpadded) tokens in the batch's rows. */
  tokens: number;
}

/** The key pairs are grouped by (`--group_by_prompt`): the chosen side's prompt tokens, when the pair knows them. */
export function pairPromptKey(p: TokenizedPair): string {
  return p.chosenPromptLen === undefined ? p.chosen.join(',') : p.chosen.slice(0, p.chosenPromptLen).join(',');
}

export function collatePairs(items: readonly TokenizedPair[], padTokenId: number): PairBatch {
  const seqs: { inputIds: number[] }[] = [];
  const promptLens: (number | undefined)[] = [];
  const rowOf = new Map<string, number>();
  // A repeated sequence is the same row only when its prompt length (the answer mask) is the same too.
  const row = (ids: number[], promptLen: number | undefined): number => {
    const key = `${promptLen ?? ''}|${ids.join(',')}`;
    let r = rowOf.get(key);
    if (r === undefined) {
      rowOf.set(key, (r = seqs.length));
      seqs.push({ inputIds: ids });
      promptLens.push(promptLen);
    }
    return r;
  };
  const chosenRows = items.map((p) => row(p.chosen, p.chosenPromptLen));
  const rejectedRows = items.map((p) => row(p.rejected, p.rejectedPromptLen));
  const b = padBatch(seqs, { padTokenId, side: 'right' });
  const batch: PairBatch = {
    inputIds: b.inputIds, attentionMask: b.attentionMask, chosenRows, rejectedRows,
    pairs: items.length, tokens: seqs.reduce((s, x) => s + x.inputIds.length, 0),
  };
  if (promptLens.every((n) => n !== undefined)) {
    batch.answerMask = answerMaskRows(promptLens as number[], seqs.map((x) => x.inputIds.length), b.inputIds[0]?.length ?? 0);
  }
  return batch;
}

export interface RewardData {
  train: PreferencePair[];
  eval: PreferencePair[];
  /** Messages for the run's log (format detected, skipped records, split). */
  notes: string[];
}

/**
 * Reads the training (and evaluation) pairs as the config says: `maxDatasetsSize` records per file, an
 * `evalDataset` or an `evalRatio` split (seeded), and the small `test` subset.
 */
export async function loadRewardData(c: Pick<RewardConfig, 'dataset' | 'evalDataset' | 'evalRatio' | 'maxDatasetsSize' | 'test' | 'skipBadRecords' | 'seed'>): Promise<RewardData> {
  const notes: string[] = [];
  const trainCap = c.test ? TEST_SUBSET.train + (c.evalDataset ? 0 : TEST_SUBSET.eval) : 0;
  const read = async (path: string, cap: number, split?: string) => {
    const limit = [cap, c.maxDatasetsSize].filter((n) => n > 0);
    const r = await loadPreferencePairs(path, { maxRecords: limit.length ? Math.min(...limit) : undefined, skipBadRecords: c.skipBadRecords, split });
    notes.push(`${path}${split ? `[${split}]` : ''}: ${r.pairs.length} pairs (${r.format})${r.skipped ? `, ${r.skipped} bad records skipped, e.g. ${r.skippedExamples[0]}` : ''}`);
    return r.pairs;
  };
  // A DatasetDict (or shard folder) that ships a test split: that is the evaluation set unless --eval_dataset is given.
  const shipped = c.evalDataset ? undefined : heldOutSplit(c.dataset);
  const all = await read(c.dataset, shipped ? (c.test ? TEST_SUBSET.train : 0) : trainCap, shipped ? 'train' : undefined);
  let train: PreferencePair[];
  let evalPairs: PreferencePair[];
  if (shipped) {
    train = all;
    evalPairs = await read(c.dataset, c.test ? TEST_SUBSET.eval : 0, shipped);
  } else if (c.evalDataset) {
    train = all;
    evalPairs = await read(c.evalDataset, c.test ? TEST_SUBSET.eval : 0);
  } else if (c.test) {
    const split = splitTrainVal(all, TEST_SUBSET.eval / (TEST_SUBSET.train + TEST_SUBSET.eval), c.seed);
    train = split.train;
    evalPairs = split.val;
  } else {
    const split = splitTrainVal(all, c.evalRatio, c.seed);
    train = split.train;
    evalPairs = split.val;
  }
  if (c.test) train = train.slice(0, TEST_SUBSET.train);
  if (train.length === 0) throw new Error(`${c.dataset}: no training pairs left after the evaluation split (lower --eval_ratio)`);
  notes.push(`train ${train.length} pairs, eval ${evalPairs.length} pairs`);
  return { train, eval: evalPairs, notes };
}
