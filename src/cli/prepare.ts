#!/usr/bin/env node
/**
 * prepare: text files → nanoGPT token files (train.bin, val.bin, meta.json) plus the tokenizer, in one directory
 * that `train_sft --dataset DIR/train.bin --eval_dataset DIR/val.bin --tokenizer DIR` reads.
 *
 *   prepare datasets/full/tinyshakespeare.txt --tokenizer char --output_dir data/shakespeare_char
 *   prepare corpus.txt --tokenizer gpt2 --output_dir data/corpus_gpt2
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { float, runMain } from './common.js';
import { invokedDirectly } from './run_main.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { BIN_DTYPES, type BinDtype } from '../data/token_bin.js';
import { prepareTokenBins } from '../data/prepare_bins.js';
import { charTokenizerFor } from '../sft/from_config.js';

export function buildPrepareCommand(): Command {
  return new Command('prepare')
    .description('Tokenize text files into nanoGPT token files: train.bin, val.bin (flat token ids), meta.json, and the tokenizer')
    .argument('<files...>', 'UTF-8 text files, concatenated in the order given')
    .requiredOption('--tokenizer <dir|hub id|char>', 'a tokenizer directory or Hub id, or char: one token per distinct character of the text (nanoGPT shakespeare_char)')
    .requiredOption('--output_dir <dir>', 'where train.bin, val.bin, meta.json and the tokenizer files go')
    .option('--val_ratio <r>', 'share of the text (its end, by characters) held out as val.bin', float('--val_ratio', 0, 0.99), 0.1)
    .addOption(new Option('--bin_dtype <type>', 'token id width: uint16 (nanoGPT; vocabularies up to 65,536) or uint32').choices([...BIN_DTYPES]).default('uint16'));
}

export async function runPrepare(files: string[], o: Record<string, unknown>): Promise<void> {
  const text = files.map((f) => readFileSync(f, 'utf8')).join('');
  const spec = o.tokenizer as string;
  const char = spec === 'char';
  const tokenizer = char
    ? charTokenizerFor([text]) // the vocabulary train_sft --tokenizer char builds: ids in nanoGPT's order
    : await Tokenizer.fromDir(await resolvePretrained(spec));
  const outDir = o.output_dir as string;
  const t0 = performance.now();
  const r = prepareTokenBins({
    text, tokenizer, outDir, valRatio: o.val_ratio as number, dtype: o.bin_dtype as BinDtype, charVocabulary: char, sources: files,
  });
  await tokenizer.save(outDir);
  console.log(`vocabulary: ${tokenizer.vocabSize} tokens${char ? ' (characters of the text, then <unk>, <|endoftext|>)' : ''}`);
  console.log(`train has ${r.trainTokens.toLocaleString('en')} tokens, val has ${r.valTokens.toLocaleString('en')} tokens (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  console.log(`wrote ${[...r.files, `${outDir}/tokenizer.json`].join(', ')}`);
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildPrepareCommand().parse(process.argv);
    await runPrepare(cmd.args, cmd.opts());
  });
}
