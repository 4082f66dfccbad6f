/**
 * Plain-text data for (continued) pretraining and PPO's ptx loss: read files, turn every sample into text,
 * concatenate with EOS between documents, pack into blocks, and cache the blocks on disk.
 */
import { loadSftSamples, type FormatOptions } from './formats.js';
import { DataError } from './location.js';
import type { ReadOptions } from './readers.js';
import { packBlocks, encodeDocuments, blockToSample, type TextEncoderLike, type TokenizedSample } from './sft_samples.js';
import { joinSegments, type PromptTemplate } from './templates/index.js';
import { cachedTokenArrays, tokenCacheKey } from './token_cache.js';
import { isChatSample } from './types.js';

export interface PackedTextOptions {
  files: string[];
  encoder: TextEncoderLike;
  /** Tokens per block (the model's context length). */
  blockSize: number;
  /** Cache dir for the packed blocks; no caching when absent. */
  cacheDir?: string;
  /** tokenizer.json text (or an object identifying the tokenizer): part of the cache key. Needed with cacheDir. */
  tokenizer?: string | object;
  /** Flattens chat samples (alpaca, conversations, ...) to text; without it only text samples are accepted. */
  template?: PromptTemplate;
  vocabSize?: number;
  read?: ReadOptions & FormatOptions;
}

export interface PackedText {
  samples: TokenizedSample[];
  fromCache: boolean;
  droppedTailTokens: number;
}

export async function loadPackedText(opts: PackedTextOptions): Promise<PackedText> {
  let droppedTailTokens = 0;
  const build = async (): Promise<number[][]> => {
    const texts: string[] = [];
    for (const file of opts.files) {
      const { samples } = await loadSftSamples(file, opts.read);
      for (const s of samples) {
        if (!isChatSample(s)) texts.push(s.text);
        else if (opts.template) texts.push(joinSegments(opts.template.render(s.messages, { alpaca: s.alpaca })));
        else throw new DataError(s.location, 'a chat record in a plain-text dataset: pass a template to flatten it');
      }
    }
    const packed = packBlocks(encodeDocuments(texts, opts.encoder), opts.blockSize);
    if (packed.blocks.length === 0) {
      throw new DataError({ file: opts.files.join(', ') }, `fewer tokens than one block of ${opts.blockSize}: lower the block size`);
    }
    droppedTailTokens = packed.droppedTailTokens;
    return packed.blocks;
  };
  if (!opts.cacheDir) {
    const blocks = await build();
    return { samples: blocks.map(blockToSample), fromCache: false, droppedTailTokens };
  }
  if (opts.tokenizer === undefined) throw new Error('loadPackedText: caching needs `tokenizer` (its tokenizer.json) for the key');
  const options = { kind: 'packed_text', blockSize: opts.blockSize, template: opts.template?.name ?? null, read: opts.read ?? {} };
  const key = tokenCacheKey({ dataFiles: opts.files, tokenizer: opts.tokenizer, options });
  const cached = await cachedTokenArrays({ cacheDir: opts.cacheDir, key, build, vocabSize: opts.vocabSize, options });
  return { samples: cached.arrays.map(blockToSample), fromCache: cached.fromCache, droppedTailTokens };
}
