/**
 * Rendered segments -> token ids and labels, and plain text -> packed blocks.
 *
 * Label convention: `labels[t]` is the token at position t itself (or -100 where no loss is taken), exactly like
 * `inputIds`; the MODEL shifts them (logits at t predict labels[t+1]), as Hugging Face's causal-LM loss does. So a
 * packed pretraining block is just `maxLen` tokens with labels = inputIds.
 */
import { DataError } from './location.js';
import { type PromptTemplate, type RenderOptions, type Segment } from './templates/index.js';
import type { ChatSample } from './types.js';

/** Positions with this label take no loss (PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100;

/** The part of a tokenizer this module needs; src/hub's tokenizer satisfies it. */
export interface TextEncoderLike {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  bosTokenId: number | null;
  eosTokenId: number | null;
}

export interface TokenizedSample {
  inputIds: number[];
  labels: number[];
}

export interface SegmentTokenizeOptions {
  /** Longest sequence kept; longer ones are truncated (and counted). */
  maxLen: number;
  /** Put BOS first when the tokenizer has one (LLaMA-style tokenizers; GPT-2 does not use it). Default false. */
  addBos?: boolean;
  /** Append EOS after the last trained segment so the model learns to stop. Default true. */
  addEos?: boolean;
  /** Which end to cut when too long: 'right' (default) or 'left' (keeps the reply, e.g. for reward models). */
  truncate?: 'right' | 'left';
}

/** Encode each segment separately (no special tokens) so a token never straddles trained and untrained text. */
export function tokenizeSegments(
  segments: Segment[],
  encoder: TextEncoderLike,
  opts: SegmentTokenizeOptions,
): { sample: TokenizedSample; truncated: boolean } {
  const lastTrained = segments.map((s) => s.train).lastIndexOf(true);
  const ids: number[] = [];
  const labels: number[] = [];
  segments.forEach((seg, i) => {
    const segIds = encoder.encode(seg.text, { addSpecialTokens: false });
    for (const id of segIds) {
      ids.push(id);
      labels.push(seg.train ? id : IGNORE_INDEX);
    }
    const eos = encoder.eosTokenId;
    // The end marker of the final reply is trained; skip it if the template's own marker already is EOS.
    if (i === lastTrained && (opts.addEos ?? true) && eos !== null && segIds[segIds.length - 1] !== eos) {
      ids.push(eos);
      labels.push(eos);
    }
  });
  const bos = opts.addBos && encoder.bosTokenId !== null ? [encoder.bosTokenId] : [];
  const room = opts.maxLen - bos.length;
  if (room <= 0) throw new Error(`--max_len ${opts.maxLen} leaves no room for tokens`);
  const truncated = ids.length > room;
  const keep = (xs: number[]): number[] => {
    if (!truncated) return xs;
    return opts.truncate === 'left' ? xs.slice(xs.length - room) : xs.slice(0, room);
  };
  return {
    sample: { inputIds: [...bos, ...keep(ids)], labels: [...bos.map(() => IGNORE_INDEX), ...keep(labels)] },
    truncated,
  };
}

/**
 * Tokenize the joined text of the segments in one piece (tokens may then differ from per-segment encoding, e.g. with a
 * sentencepiece-style normalizer that marks every piece's start), and label the tokens that overlap a trained
 * segment. A boundary at character p falls after the tokens that `encode(text[:p])` shares with the whole encoding:
 * a token that straddles the start of a trained span is trained, one that straddles its end is trained too.
 * No BOS or EOS is added: the text holds them (chat templates).
 */
export function tokenizeWholeText(
  segments: Segment[],
  encoder: TextEncoderLike,
  opts: Pick<SegmentTokenizeOptions, 'maxLen' | 'truncate'>,
): { sample: TokenizedSample; truncated: boolean } {
  const text = segments.map((s) => s.text).join('');
  const ids = encoder.encode(text, { addSpecialTokens: false });
  const labels = new Array<number>(ids.length).fill(IGNORE_INDEX);
  const tokenBoundary = (chars: number, roundUp: boolean): number => {
    if (chars >= text.length) return ids.length;
    const prefix = encoder.encode(text.slice(0, chars), { addSpecialTokens: false });
    let shared = 0;
    while (shared < prefix.length && shared < ids.length && prefix[shared] === ids[shared]) shared++;
    return shared === prefix.length || !roundUp ? shared : Math.min(shared + 1, ids.length);
  };
  let at = 0;
  for (const seg of segments) {
    const end = at + seg.text.length;
    if (seg.train) {
      const from = tokenBoundary(at, false);
      const to = tokenBoundary(end, true);
      for (let t = from; t < to; t++) labels[t] = ids[t]!;
    }
    at = end;
  }
  const truncated = ids.length > opts.maxLen;
  const keep = (xs: number[]): number[] => {
    if (!truncated) return xs;
    return opts.truncate === 'left' ? xs.slice(xs.length - opts.maxLen) : xs.slice(0, opts.maxLen);
  };
  return { sample: { inputIds: keep(ids), labels: keep(labels) }, truncated };
}

export interface TokenizeStats {
  samples: number;
  /** Samples longer than maxLen, cut to fit. */
  truncated: number;
  /** Samples dropped because truncation left no trained token. */
  droppedNoTarget: number;
  tokens: number;
}

/** Render chat samples with a template and tokenize them; errors name the sample's file and record. */
export function tokenizeChatSamples(
  samples: ChatSample[],
  template: PromptTemplate,
  encoder: TextEncoderLike,
  opts: SegmentTokenizeOptions & Pick<RenderOptions, 'knowledge'>,
): { samples: TokenizedSample[]; stats: TokenizeStats } {
  const out: TokenizedSample[] = [];
  const stats: TokenizeStats = { samples: 0, truncated: 0, droppedNoTarget: 0, tokens: 0 };
  for (const s of samples) {
    let segments: Segment[];
    try {
      segments = template.render(s.messages, { alpaca: s.alpaca, knowledge: opts.knowledge });
    } catch (err) {
      throw new DataError(s.location, `template "${template.name}": ${(err as Error).message}`);
    }
    const { sample, truncated } = template.ownsSpecialTokens ? tokenizeWholeText(segments, encoder, opts) : tokenizeSegments(segments, encoder, opts);
    if (truncated) stats.truncated++;
    if (!sample.labels.some((l) => l !== IGNORE_INDEX)) {
      stats.droppedNoTarget++;
      continue;
    }
    stats.samples++;
    stats.tokens += sample.inputIds.length;
    out.push(sample);
  }
  return { samples: out, stats };
}

/** Documents -> one token stream, each document followed by EOS (when the tokenizer has one). */
export function encodeDocuments(texts: Iterable<string>, encoder: TextEncoderLike): number[] {
  const stream: number[] = [];
  for (const text of texts) {
    for (const id of encoder.encode(text, { addSpecialTokens: false })) stream.push(id);
    if (encoder.eosTokenId !== null) stream.push(encoder.eosTokenId);
  }
  return stream;
}

/** Cut a token stream into blocks of exactly `blockSize` tokens; the short tail is dropped. */
export function packBlocks(stream: ArrayLike<number>, blockSize: number): { blocks: number[][]; droppedTailTokens: number } {
  if (!Number.isInteger(blockSize) || blockSize <= 0) throw new Error(`blockSize must be a positive integer, got ${blockSize}`);
  const blocks: number[][] = [];
  const whole = Math.floor(stream.length / blockSize);
  for (let b = 0; b < whole; b++) blocks.push(Array.from({ length: blockSize }, (_, i) => stream[b * blockSize + i]!));
  return { blocks, droppedTailTokens: stream.length - whole * blockSize };
}

/** A packed block as a training sample: labels = inputIds (the model shifts). */
export function blockToSample(block: number[]): TokenizedSample {
  return { inputIds: block, labels: block.slice() };
}

/** Plain-text documents -> packed samples of `blockSize` tokens (pretraining / ptx data). */
export function packTexts(
  texts: Iterable<string>,
  encoder: TextEncoderLike,
  blockSize: number,
): { samples: TokenizedSample[]; tokens: number; droppedTailTokens: number } {
  const stream = encodeDocuments(texts, encoder);
  if (stream.length < blockSize) {
    throw new Error(`the text has ${stream.length} tokens, fewer than one block of ${blockSize}: lower --max_len`);
  }
  const { blocks, droppedTailTokens } = packBlocks(stream, blockSize);
  return { samples: blocks.map(blockToSample), tokens: stream.length, droppedTailTokens };
}
