/**
 * `train_sft --dataset train.bin [--eval_dataset val.bin]`: nanoGPT token files (src/data/token_bin.ts) instead of
 * text. Training draws blocks of --max_len inputs and --max_len targets, as nanoGPT's get_batch (random, or in order
 * with --sequential); evaluation reads every block of the eval file in order (each token after the first a target
 * once), or --eval_iters batches of random blocks (nanoGPT's estimate_loss, drawn once so every evaluation of a run
 * sees the same blocks).
 */
import { Rng } from '../engine/rng.js';
import { isTokenBinPath, randomBlocks, readTokenBin, sequentialBlocks, type TokenArray } from '../data/token_bin.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import { CHAR_TOKENIZER, type SftConfig } from './config.js';
import type { PreparedSftData } from './data.js';

export interface BinTrainData {
  tokens: TokenArray;
  /** The file(s), for messages. */
  file: string;
}

/** Whether the run reads token files; mixing them with other data, or settings they cannot use, is an error. */
export function usesTokenBins(c: SftConfig): boolean {
  const files = [...c.dataset, ...c.evalDataset];
  const bins = files.filter(isTokenBinPath);
  if (!bins.length) {
    if (c.sequential) throw new Error('--sequential walks the blocks of .bin token files in order; --dataset has none');
    if (c.evalIters !== undefined) throw new Error('--eval_iters samples blocks of a .bin --eval_dataset; the datasets have none');
    return false;
  }
  if (bins.length !== files.length) {
    throw new Error(`.bin token files (${bins.join(', ')}) cannot be mixed with other data (${files.filter((f) => !isTokenBinPath(f)).join(', ')})`);
  }
  if (c.tokenizer === CHAR_TOKENIZER || (!c.tokenizer && !c.pretrain && !c.resume)) {
    throw new Error('.bin token files hold ids, not text: pass --tokenizer DIR with the tokenizer that wrote them (the directory `prepare` wrote holds it)');
  }
  if (!c.evalDataset.length && c.evalRatio > 0) {
    throw new Error('--eval_ratio splits samples; for .bin token files give the held-out file instead: --eval_dataset val.bin (prepare writes it)');
  }
  if (c.evalIters !== undefined && (!Number.isInteger(c.evalIters) || c.evalIters < 1)) throw new Error(`--eval_iters must be an integer >= 1, got ${c.evalIters}`);
  return true;
}

function readAll(files: string[], c: SftConfig, vocabSize: number): TokenArray {
  const parts = files.map((f) => readTokenBin(f, c.binDtype, vocabSize));
  if (parts.length === 1) return parts[0]!;
  const out = c.binDtype === 'uint16' ? new Uint16Array(parts.reduce((n, p) => n + p.length, 0)) : new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The training tokens and the evaluation blocks of a token-file run. */
export function prepareBinData(tokenizer: Tokenizer, c: SftConfig): { data: PreparedSftData; train: BinTrainData } {
  const tokens = readAll(c.dataset, c, tokenizer.vocabSize);
  const notes = [
    `${c.dataset.join(', ')}: ${tokens.length.toLocaleString('en')} ${c.binDtype} tokens, ${c.sequential ? 'consecutive' : 'random'} blocks of ${c.maxLen} inputs and ${c.maxLen} targets`,
  ];
  let evalBlocks: PreparedSftData['eval'] = [];
  if (c.evalDataset.length) {
    const val = readAll(c.evalDataset, c, tokenizer.vocabSize);
    if (val.length <= c.maxLen) {
      throw new Error(`${c.evalDataset.join(', ')}: ${val.length} tokens, too few for one block of --max_len ${c.maxLen} (its inputs and the target after them)`);
    }
    evalBlocks = c.evalIters !== undefined
      ? randomBlocks(val, c.maxLen, c.evalIters * c.batchSize, new Rng((c.seed ^ 0xe7a15eed) >>> 0))
      : sequentialBlocks(val, c.maxLen);
    notes.push(`${c.evalDataset.join(', ')}: ${val.length.toLocaleString('en')} tokens; evaluating on ${evalBlocks.length} blocks ` +
      (c.evalIters !== undefined ? `(${c.evalIters} batches of random blocks, --eval_iters)` : '(every block, in order)'));
  }
  return {
    data: { mode: 'text', train: [], eval: evalBlocks, fromCache: false, notes },
    train: { tokens, file: c.dataset.join(', ') },
  };
}
