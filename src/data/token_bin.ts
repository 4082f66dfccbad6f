/**
 * nanoGPT's token files: `train.bin` / `val.bin` are flat arrays of token ids (numpy uint16, little-endian, no
 * header; uint32 for vocabularies past 65,536), written by its `prepare.py` scripts. Training reads random blocks
 * (its `get_batch`: every batch draws fresh offsets) or, here optionally, consecutive blocks in order.
 *
 * A block is nanoGPT's (x, y): `blockSize` input ids data[i : i+T] and `blockSize` targets data[i+1 : i+T+1], so every
 * position predicts a token and the model never sees a position past its table (T = --max_len <= n_positions). As a
 * sample its labels are data[i : i+T+1], aligned with the inputs and one longer: the loss shifts labels by one
 * (src/models/ops/loss.ts), and the label past the last input is that position's target.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { Rng } from '../engine/rng.js';
import { BatchLoader, type Batch } from './batching.js';
import type { TokenizedSample } from './sft_samples.js';

export const BIN_DTYPES = ['uint16', 'uint32'] as const;
export type BinDtype = (typeof BIN_DTYPES)[number];
export type TokenArray = Uint16Array | Uint32Array;

const BYTES: Record<BinDtype, number> = { uint16: 2, uint32: 4 };

/** Whether a path names a token file (by its `.bin` extension). */
export function isTokenBinPath(path: string): boolean {
  return /\.bin$/i.test(path);
}

/** Writes ids as a flat little-endian array; an id the dtype cannot hold is an error naming it. */
export function writeTokenBin(path: string, ids: ArrayLike<number>, dtype: BinDtype = 'uint16'): void {
  const max = dtype === 'uint16' ? 0xffff : 0xffffffff;
  const out = dtype === 'uint16' ? new Uint16Array(ids.length) : new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id > max) {
      throw new Error(`${path}: token id ${id} at position ${i} does not fit ${dtype}${dtype === 'uint16' ? ' (use --bin_dtype uint32)' : ''}`);
    }
    out[i] = id;
  }
  // Typed arrays use the platform's byte order; every platform Node runs on is little-endian, as numpy's files are.
  writeFileSync(path, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
}

/** Reads a token file whole; its size must be a multiple of the dtype's width, its ids below `vocabSize` if given. */
export function readTokenBin(path: string, dtype: BinDtype = 'uint16', vocabSize?: number): TokenArray {
  const size = statSync(path).size;
  const width = BYTES[dtype];
  if (size % width !== 0) {
    throw new Error(`${path}: ${size} bytes is not a whole number of ${dtype} token ids (${width} bytes each): is --bin_dtype right?`);
  }
  const buf = readFileSync(path);
  // A copy into a fresh, aligned buffer (Node may hand back a slice of a shared pool at any offset).
  const bytes = new Uint8Array(buf.byteLength);
  bytes.set(buf);
  const tokens = dtype === 'uint16' ? new Uint16Array(bytes.buffer) : new Uint32Array(bytes.buffer);
  if (vocabSize !== undefined) {
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i]! >= vocabSize) {
        throw new Error(`${path}: token id ${tokens[i]} at position ${i} is outside the tokenizer's ${vocabSize} tokens: wrong --tokenizer or --bin_dtype?`);
      }
    }
  }
  return tokens;
}

/** The block at `offset`: inputs tokens[offset, offset + length), labels tokens[offset, offset + length] (one more). */
export function blockAt(tokens: TokenArray, offset: number, length: number): TokenizedSample {
  if (offset < 0 || offset + length + 1 > tokens.length) {
    throw new Error(`blockAt: a block of ${length} inputs and ${length} targets at offset ${offset} runs past the ${tokens.length} tokens`);
  }
  const labels = Array.from(tokens.subarray(offset, offset + length + 1));
  return { inputIds: labels.slice(0, length), labels };
}

/** Blocks a walk in order makes: they start every `blockSize` tokens and each needs one token past its inputs. */
export function sequentialBlockCount(tokens: number, blockSize: number): number {
  return Math.max(0, Math.floor((tokens - 1) / blockSize));
}

/**
 * The blocks at offsets 0, T, 2T, ... (an evaluation set, or one sequential pass): every token after the first is a
 * target exactly once (a block's last target is the next block's first input).
 */
export function sequentialBlocks(tokens: TokenArray, blockSize: number): TokenizedSample[] {
  return Array.from({ length: sequentialBlockCount(tokens.length, blockSize) }, (_, k) => blockAt(tokens, k * blockSize, blockSize));
}

/** `count` blocks at uniform random offsets in [0, n - blockSize) (nanoGPT's torch.randint(len(data) - block_size)), seeded. */
export function randomBlocks(tokens: TokenArray, blockSize: number, count: number, rng: Rng): TokenizedSample[] {
  const span = tokens.length - blockSize;
  if (span < 1) throw new Error(`randomBlocks: ${tokens.length} tokens hold no block of ${blockSize} inputs and ${blockSize} targets`);
  return Array.from({ length: count }, () => blockAt(tokens, rng.int(span), blockSize));
}

export interface TokenBlockLoaderOptions {
  blockSize: number;
  /** Blocks per micro-batch on this rank. */
  batchSize: number;
  seed: number;
  rank: number;
  worldSize: number;
  /** Walk consecutive blocks in order instead of drawing random ones. */
  sequential: boolean;
  collate: (samples: TokenizedSample[]) => Batch;
}

/**
 * Batches of blocks of a token file, for the trainers' loop (a BatchLoader: same position, restore and epochs).
 * An "epoch" is as many blocks as a walk in order makes (`sequentialBlocks`), split over the ranks. Random mode draws each
 * batch's offsets from a generator seeded by (seed, rank, epoch, batch index), so a resumed run draws the same blocks
 * and every rank its own ones; sequential mode gives rank r the blocks r, r + ranks, ... of each global batch.
 */
export class TokenBlockLoader extends BatchLoader<TokenizedSample, Batch> {
  private readonly tokens: TokenArray;
  private readonly o: TokenBlockLoaderOptions;

  constructor(tokens: TokenArray, file: string, o: TokenBlockLoaderOptions) {
    const blocks = sequentialBlockCount(tokens.length, o.blockSize);
    const perEpoch = Math.floor(blocks / (o.batchSize * o.worldSize));
    if (perEpoch < 1) {
      throw new Error(
        `${file}: ${tokens.length} tokens make ${blocks} block(s) of --max_len ${o.blockSize}, fewer than one batch of ` +
          `${o.batchSize} × ${o.worldSize} rank(s): use more data or a smaller --max_len / --batch_size`,
      );
    }
    // The base class only counts batches and keeps the position: its items are placeholders, its collate unused.
    super(new Array<TokenizedSample>(perEpoch * o.batchSize), { batchSize: o.batchSize, shuffle: false, collate: () => null as unknown as Batch });
    this.tokens = tokens;
    this.o = o;
  }

  override next(): { batch: Batch; epoch: number; index: number } {
    const { epoch, index } = super.next();
    const { blockSize, batchSize, rank, worldSize } = this.o;
    let samples: TokenizedSample[];
    if (this.o.sequential) {
      const first = (index * worldSize + rank) * batchSize;
      samples = Array.from({ length: batchSize }, (_, j) => blockAt(this.tokens, (first + j) * blockSize, blockSize));
    } else {
      let h = Math.imul(this.o.seed ^ 0x2545f491, 0x9e3779b1) >>> 0;
      for (const v of [rank, epoch, index]) h = Math.imul(h ^ (v + 0x7f4a7c15), 0x85ebca77) >>> 0;
      samples = randomBlocks(this.tokens, blockSize, batchSize, new Rng(h ^ (h >>> 15)));
    }
    return { batch: this.o.collate(samples), epoch, index };
  }
}
