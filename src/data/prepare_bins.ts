/**
 * What nanoGPT's `prepare.py` scripts do, for any tokenizer: read a text, split it 90/10 by characters (the first
 * 90% trains, the rest is held out), tokenize each part and write `train.bin` and `val.bin`; for a character
 * vocabulary also the `meta` file its sampler reads (here `meta.json`: vocab_size, itos, stoi, as meta.pkl holds).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tokenizer } from '../hub/tokenizer.js';
import { writeTokenBin, type BinDtype } from './token_bin.js';

export interface PrepareBinsOptions {
  /** The whole corpus. */
  text: string;
  tokenizer: Tokenizer;
  outDir: string;
  /** Share of the text (by characters, at the end) held out as val.bin; nanoGPT: 0.1. */
  valRatio: number;
  dtype: BinDtype;
  /** Character vocabulary: write itos/stoi into meta.json as nanoGPT's meta.pkl has them. */
  charVocabulary: boolean;
  /** Where the text came from, for meta.json. */
  sources: string[];
}

export interface PreparedBins {
  trainTokens: number;
  valTokens: number;
  files: string[];
}

/** Code points, not UTF-16 units: a split never cuts a character in two. */
function splitByCharacters(text: string, valRatio: number): [string, string] {
  const chars = Array.from(text);
  const n = Math.floor(chars.length * (1 - valRatio));
  return [chars.slice(0, n).join(''), chars.slice(n).join('')];
}

export function prepareTokenBins(o: PrepareBinsOptions): PreparedBins {
  if (!(o.valRatio >= 0 && o.valRatio < 1)) throw new Error(`--val_ratio must be in [0, 1), got ${o.valRatio}`);
  if (!o.text) throw new Error(`no text in ${o.sources.join(', ')}`);
  const [trainText, valText] = splitByCharacters(o.text, o.valRatio);
  const encode = (t: string) => (t ? o.tokenizer.encode(t, { addSpecialTokens: false }) : []);
  const train = encode(trainText);
  const val = encode(valText);
  if (o.tokenizer.vocabSize > 0x10000 && o.dtype === 'uint16') {
    throw new Error(`the tokenizer has ${o.tokenizer.vocabSize} tokens, more than uint16 holds: use --bin_dtype uint32`);
  }
  mkdirSync(o.outDir, { recursive: true });
  const trainFile = join(o.outDir, 'train.bin');
  const valFile = join(o.outDir, 'val.bin');
  writeTokenBin(trainFile, train, o.dtype);
  const files = [trainFile];
  if (o.valRatio > 0) {
    writeTokenBin(valFile, val, o.dtype);
    files.push(valFile);
  }
  const meta: Record<string, unknown> = {
    vocab_size: o.tokenizer.vocabSize, dtype: o.dtype, train_tokens: train.length, val_tokens: val.length,
    val_ratio: o.valRatio, sources: o.sources,
  };
  if (o.charVocabulary) {
    const itos: Record<string, string> = {};
    const stoi: Record<string, number> = {};
    for (let id = 0; id < o.tokenizer.vocabSize; id++) {
      const tok = o.tokenizer.idToToken(id);
      if (tok === null) continue;
      itos[String(id)] = tok;
      stoi[tok] = id;
    }
    Object.assign(meta, { itos, stoi });
  }
  const metaFile = join(o.outDir, 'meta.json');
  writeFileSync(metaFile, JSON.stringify(meta, null, 1) + '\n');
  files.push(metaFile);
  return { trainTokens: train.length, valTokens: val.length, files };
}
