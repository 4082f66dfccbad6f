/**
 * PPO's two datasets: prompts (rendered with the template, tokenized, the user's text shortened to --max_input_len, served
 * left-padded in a fresh random order every pass) and the optional ptx data (any SFT format, as LM-loss samples).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrompts } from '../data/prompts.js';
import { loadSftSamples } from '../data/formats.js';
import type { PromptTemplate } from '../data/templates/index.js';
import { blockToSample, encodeDocuments, packBlocks, tokenizeChatSamples, type TokenizedSample } from '../data/sft_samples.js';
import { BatchLoader, padBatch, type Batch, type LoaderOptions } from '../data/batching.js';
import { DataError } from '../data/location.js';
import { isChatSample, type ChatSample } from '../data/types.js';
import { fitPrompt } from '../data/prompt_fit.js';
import type { Tokenizer } from '../hub/tokenizer.js';

export const DEFAULT_PROMPT_TEMPLATE = 'alpaca';

// Shared with GRPO (src/rollout/prompts.ts); re-exported for PPO's users.
export { recordedTemplate, tokenizerAddsBos } from '../rollout/prompts.js';
import { tokenizerAddsBos } from '../rollout/prompts.js';

export interface PromptData {
  /** Token ids of each rendered prompt (not padded). */
  prompts: number[][];
  /** The rendered texts, for sample logs. */
  texts: string[];
  /** The conversations rendered (user text shortened where it was cut). */
  samples: ChatSample[];
  /** Which prompts were shortened. */
  cut: boolean[];
  skipped: number;
  skippedExamples: string[];
  /** Prompts longer than maxInputLen, whose user text was shortened to fit. */
  truncated: number;
  /** Of those, prompts whose template and earlier turns alone exceed maxInputLen: their start was dropped. */
  truncatedTemplate: number;
}

export interface PromptDataOptions {
  template: PromptTemplate;
  maxInputLen: number;
  column?: string;
  maxRecords?: number;
  skipBadRecords?: boolean;
}

/** Reads, renders and tokenizes the prompts; errors name the file and record. */
export async function preparePrompts(path: string, tokenizer: Tokenizer, o: PromptDataOptions): Promise<PromptData> {
  const loaded = await loadPrompts(path, { column: o.column, maxRecords: o.maxRecords, skipBadRecords: o.skipBadRecords });
  // a chat template's text holds its own BOS (rendered with add_generation_prompt, as transformers renders prompts)
  const bos = !o.template.ownsSpecialTokens && tokenizerAddsBos(tokenizer) ? [tokenizer.bosTokenId!] : [];
  const prompts: number[][] = [];
  const texts: string[] = [];
  const samples: ChatSample[] = [];
  const cut: boolean[] = [];
  let truncated = 0;
  let truncatedTemplate = 0;
  for (const sample of loaded.prompts) {
    const render = (x: ChatSample): string => {
      try {
        return o.template.renderPrompt(x.messages, { alpaca: x.alpaca });
      } catch (e) {
        throw new DataError(sample.location, `template "${o.template.name}": ${(e as Error).message}`);
      }
    };
    // Too long: shorten the user's text inside the template, so the header and the answer cue survive.
    const fitted = fitPrompt(sample, render, (t) => tokenizer.encode(t, { addSpecialTokens: false }), o.maxInputLen, bos);
    if (fitted.cut) truncated++;
    if (fitted.cutTemplate) truncatedTemplate++;
    prompts.push(fitted.ids);
    texts.push(fitted.text);
    samples.push(fitted.sample);
    cut.push(fitted.cut);
  }
  return { prompts, texts, samples, cut, skipped: loaded.skipped, skippedExamples: loaded.skippedExamples, truncated, truncatedTemplate };
}

/** The file in a run's log directory that counts its prompts and how many were shortened (the pipeline's summary reads it). */
export const PROMPT_COUNTS_FILE = 'prompts.json';

/** What PROMPT_COUNTS_FILE holds: prompts used, shortened to fit --max_input_len, and those cut even through the template. */
export interface PromptCounts {
  prompts_total: number;
  prompts_cut: number;
  prompts_cut_template: number;
  max_input_len: number;
}

export function promptCounts(data: PromptData, maxInputLen: number): PromptCounts {
  return { prompts_total: data.prompts.length, prompts_cut: data.truncated, prompts_cut_template: data.truncatedTemplate, max_input_len: maxInputLen };
}

export function writePromptCounts(logDir: string, counts: PromptCounts): void {
  mkdirSync(logDir, { recursive: true });
  writeFileSync(join(logDir, PROMPT_COUNTS_FILE), JSON.stringify(counts) + '\n');
}

/** Makes a loader; a strategy's `createLoader` gives each rank its share of every global batch. */
export type LoaderFactory = <T, B>(items: readonly T[], opts: LoaderOptions<T, B>) => BatchLoader<T, B>;
const plainLoader: LoaderFactory = (items, opts) => new BatchLoader(items, opts);

/** Left-padded prompt batches in a reshuffled order every pass, resumable from a saved position. */
export function promptLoader(prompts: number[][], batchSize: number, padTokenId: number, seed: number, make: LoaderFactory = plainLoader): BatchLoader<number[], Batch> {
  return make(prompts, {
    batchSize: Math.min(batchSize, prompts.length),
    shuffle: true,
    seed,
    collate: (rows) => padBatch(rows.map((inputIds) => ({ inputIds })), { padTokenId, side: 'left' }),
  });
}

export interface PtxDataOptions {
  template: PromptTemplate;
  maxLen: number;
  maxRecords?: number;
  skipBadRecords?: boolean;
}

/**
 * ptx samples: chat records rendered with the template (loss on the replies, as in SFT); plain text packed into blocks
 * of maxLen tokens (loss on every token), or one shorter sample when there is less than a block.
 */
export async function preparePtx(files: string[], tokenizer: Tokenizer, o: PtxDataOptions): Promise<TokenizedSample[]> {
  const out: TokenizedSample[] = [];
  const addBos = tokenizerAddsBos(tokenizer);
  for (const file of files) {
    const { samples } = await loadSftSamples(file, { maxRecords: o.maxRecords, skipBadRecords: o.skipBadRecords });
    const chats = samples.filter(isChatSample);
    if (chats.length) out.push(...tokenizeChatSamples(chats, o.template, tokenizer, { maxLen: o.maxLen, addBos }).samples);
    const texts = samples.filter((s) => !isChatSample(s)).map((s) => (s as { text: string }).text);
    if (texts.length) {
      const stream = encodeDocuments(texts, tokenizer);
      const { blocks } = packBlocks(stream, o.maxLen);
      if (blocks.length) out.push(...blocks.map(blockToSample));
      else if (stream.length >= 2) out.push(blockToSample(stream));
    }
  }
  if (!out.length) throw new DataError({ file: files.join(', ') }, 'no ptx samples with a trained token');
  return out;
}

export function ptxLoader(samples: TokenizedSample[], batchSize: number, padTokenId: number, seed: number, make: LoaderFactory = plainLoader): BatchLoader<TokenizedSample, Batch> {
  return make(samples, {
    batchSize: Math.min(batchSize, samples.length),
    shuffle: true,
    seed,
    collate: (rows) => padBatch(rows, { padTokenId, side: 'right' }),
  });
}
