/**
 * SFT data preparation: files -> tokenized train and eval samples.
 *
 * Two paths, chosen from the files themselves:
 * - chat (alpaca, self-instruct, prompt/response, conversations, ...): render with the prompt template, tokenize, loss
 *   only on the assistant tokens (labels -100 elsewhere), truncate to maxLen;
 * - plain text (`.txt`, or records with `text` / poetry `paragraphs`): continued pretraining on packed blocks of
 *   maxLen tokens, cached on disk as packed token files so a second run does not tokenize again.
 * Held-out data comes from evalDataset, else a seeded `evalRatio` split.
 */
import {
  detectFileKind, detectFormat, isChatSample, resolvePromptTemplate, iterateRecords, loadPackedText, loadSftSamples,
  splitTrainVal, tokenizeChatSamples, DataError, type ChatSample, type FormatOptions, type PromptTemplate, type TokenizedSample,
} from '../data/index.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import type { SftConfig } from './config.js';

export type SftDataMode = 'chat' | 'text';

/** The SftConfig fields data preparation reads (documented there). */
export type SftDataOptions = Pick<
  SftConfig,
  | 'dataset' | 'evalDataset' | 'evalRatio' | 'maxDatasetsSize' | 'maxLen' | 'promptTemplate' | 'promptColumn'
  | 'responseColumn' | 'skipBadRecords' | 'cacheDir' | 'seed'
>;

export interface PreparedSftData {
  mode: SftDataMode;
  train: TokenizedSample[];
  eval: TokenizedSample[];
  /** Plain text only: whether the packed training tokens came from the token cache. */
  fromCache: boolean;
  /** What happened to the data, one line each (counts of skipped, truncated, dropped samples). */
  notes: string[];
  /** Chat data only: the prompt template used, recorded in the output so later stages render prompts the same way. */
  templateName?: string;
}

const TEXT_FORMATS = new Set(['text', 'poetry']);

function formatOptions(o: SftDataOptions): FormatOptions {
  return { promptColumn: o.promptColumn, responseColumn: o.responseColumn, skipBadRecords: o.skipBadRecords };
}

/** Whether the files hold plain text or chat samples (from the extension, else the first record's fields). */
export async function detectDataMode(files: string[], o: SftDataOptions): Promise<SftDataMode> {
  const modes = new Map<string, SftDataMode>();
  for (const file of files) {
    if (detectFileKind(file) === 'text') {
      modes.set(file, 'text');
      continue;
    }
    let first;
    for await (const rec of iterateRecords(file, { maxRecords: 1, skipBadRecords: o.skipBadRecords })) first = rec;
    if (!first) throw new DataError({ file }, 'no records');
    modes.set(file, TEXT_FORMATS.has(detectFormat(first, formatOptions(o))) ? 'text' : 'chat');
  }
  const kinds = new Set(modes.values());
  if (kinds.size > 1) {
    const show = (m: SftDataMode) => [...modes].filter(([, k]) => k === m).map(([f]) => f).join(', ');
    throw new Error(`the datasets mix plain text (${show('text')}) with chat data (${show('chat')}): train them in separate runs`);
  }
  return [...kinds][0]!;
}

/** Every text of the plain-text files (what `--tokenizer char` builds its vocabulary from). */
export async function readCorpusTexts(files: string[], o: SftDataOptions): Promise<string[]> {
  const texts: string[] = [];
  for (const file of files) {
    const { samples } = await loadSftSamples(file, { ...formatOptions(o), maxRecords: o.maxDatasetsSize });
    for (const s of samples) if (!isChatSample(s)) texts.push(s.text);
  }
  return texts;
}

/** Whether the tokenizer's own encode puts BOS first (LLaMA-style): then SFT samples start with it too. */
function tokenizerAddsBos(tokenizer: Tokenizer): boolean {
  const bos = tokenizer.bosTokenId;
  if (bos === null) return false;
  const plain = tokenizer.encode('a', { addSpecialTokens: false });
  const full = tokenizer.encode('a');
  return full.length > plain.length && full[0] === bos;
}

async function loadChatFiles(files: string[], o: SftDataOptions, notes: string[]): Promise<ChatSample[]> {
  const out: ChatSample[] = [];
  for (const file of files) {
    const res = await loadSftSamples(file, formatOptions(o));
    for (const s of res.samples) {
      if (!isChatSample(s)) throw new DataError(s.location, 'a plain-text record among chat records: train plain text in a separate run');
      out.push(s);
    }
    if (res.skipped > 0) notes.push(`${file}: skipped ${res.skipped} bad record(s) (--skip_bad_records), e.g. ${res.skippedExamples[0]}`);
    notes.push(`${file}: ${res.samples.length} sample(s), ${res.format} format`);
  }
  return out;
}

/** The SFT default for a model without a chat template. */
export const SFT_FALLBACK_TEMPLATE = 'alpaca';

function tokenizeChat(samples: ChatSample[], template: PromptTemplate, tokenizer: Tokenizer, o: SftDataOptions, what: string, notes: string[]): TokenizedSample[] {
  const { samples: tokenized, stats } = tokenizeChatSamples(samples, template, tokenizer, { maxLen: o.maxLen, addBos: tokenizerAddsBos(tokenizer) });
  if (stats.truncated) notes.push(`${what}: ${stats.truncated} sample(s) longer than --max_len ${o.maxLen} truncated`);
  if (stats.droppedNoTarget) {
    notes.push(`${what}: ${stats.droppedNoTarget} sample(s) dropped: no response token left after truncation (raise --max_len)`);
  }
  return tokenized;
}

/**
 * Chat files -> tokenized train/eval samples with the prompt masked out of the labels. `modelDir` is the model being
 * fine-tuned: with no --prompt_template, the template its own training recorded comes first.
 */
export async function prepareChatData(tokenizer: Tokenizer, o: SftDataOptions, modelDir?: string): Promise<PreparedSftData> {
  const notes: string[] = [];
  let samples = await loadChatFiles(o.dataset, o, notes);
  if (o.maxDatasetsSize !== undefined && samples.length > o.maxDatasetsSize) {
    notes.push(`using the first ${o.maxDatasetsSize} of ${samples.length} samples (--max_datasets_size)`);
    samples = samples.slice(0, o.maxDatasetsSize);
  }
  let trainRaw = samples;
  let evalRaw: ChatSample[] = [];
  if (o.evalDataset.length) evalRaw = await loadChatFiles(o.evalDataset, o, notes);
  else if (o.evalRatio > 0) ({ train: trainRaw, val: evalRaw } = splitTrainVal(samples, o.evalRatio, o.seed));
  const { template, note } = resolvePromptTemplate(o.promptTemplate, tokenizer, SFT_FALLBACK_TEMPLATE, modelDir);
  notes.push(note);
  const train = tokenizeChat(trainRaw, template, tokenizer, o, 'train', notes);
  const evalSamples = tokenizeChat(evalRaw, template, tokenizer, o, 'eval', notes);
  if (!train.length) throw new Error(`no training sample is left from ${o.dataset.join(', ')} (see: ${notes.join('; ')})`);
  return { mode: 'chat', train, eval: evalSamples, fromCache: false, notes, templateName: template.name };
}

/** Plain-text files -> packed blocks of maxLen tokens (cached), split or with separate eval files. */
export async function prepareTextData(tokenizer: Tokenizer, o: SftDataOptions): Promise<PreparedSftData> {
  const notes: string[] = [];
  const pack = (files: string[]) =>
    loadPackedText({
      files, encoder: tokenizer, blockSize: o.maxLen, cacheDir: o.cacheDir, tokenizer: tokenizer.toJson(),
      vocabSize: tokenizer.vocabSize, read: { ...formatOptions(o), maxRecords: o.maxDatasetsSize },
    });
  const packed = await pack(o.dataset);
  notes.push(`plain text: ${packed.samples.length} block(s) of ${o.maxLen} tokens; token cache ${packed.fromCache ? 'hit' : 'miss (tokenized and cached)'} in ${o.cacheDir}`);
  let train = packed.samples;
  let evalSamples: TokenizedSample[] = [];
  if (o.evalDataset.length) evalSamples = (await pack(o.evalDataset)).samples;
  else if (o.evalRatio > 0) ({ train, val: evalSamples } = splitTrainVal(packed.samples, o.evalRatio, o.seed));
  return { mode: 'text', train, eval: evalSamples, fromCache: packed.fromCache, notes };
}
