/**
 * Batched generation for left-padded prompts with a KV cache: per-row EOS stop, greedy or sampled tokens, and what
 * PPO needs back (an action mask ending at the first EOS inclusive, and per-token log-probs).
 * Positions come from the attention mask, so a left-padded prompt generates exactly what it generates alone.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import type { DecoderModel, KVCache } from './decoder.js';
import { NativeKVCache } from '../engine/native_decode.js';
import { FusedDecodeStep, fusedDecodeUnsupported } from './fused_decode.js';
import { positionsFromMask } from './ops/positions.js';
import { applyRepetitionPenalty, chooseToken, type SamplingOptions } from './sampling.js';
import { configEosTokenIds } from './config.js';

export interface GenerateOptions extends Partial<SamplingOptions> {
  /** New tokens at most (default 20 when neither this nor maxLength is set). */
  maxNewTokens?: number;
  /** Total length (prompt + new) at most, as HF's max_length. */
  maxLength?: number;
  /** Token id(s) that end a row; defaults to generation_config.json's eos_token_id (any of them), else config.json's. */
  eosTokenId?: number | number[] | null;
  /** Filler after a row ended; defaults to pad_token_id, else EOS. */
  padTokenId?: number | null;
  useCache?: boolean;
  rng?: Rng;
  /** Compute the log-prob of each chosen token under the model's unprocessed distribution. */
  returnLogProbs?: boolean;
}

export interface GenerateOutput {
  /** [B, P + N]: the (left-padded) prompt then the new tokens, pad after a row's EOS. */
  sequences: number[][];
  /** [B, P + N] 0/1. */
  attentionMask: number[][];
  /** [B, N] 1 for generated tokens up to and including the first EOS. */
  actionMask: number[][];
  /** [B, N] when returnLogProbs. */
  logProbs?: number[][];
  promptLength: number;
}

function logSoftmaxAt(logits: Float32Array, token: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[token]! - max - Math.log(sum);
}

/**
 * One batch's decoding state: the KV cache and the weights held for decoding. On the native backend, for models its
 * kernel covers (decided once, here), the cache is a `NativeKVCache` written in place; otherwise a cache of tensors
 * that each step replaces. `nextLogits` feeds the positions of the sequences not fed yet (all of them the first
 * time; without the cache, the whole sequence every time).
 */
export class DecodingSession {
  private cache: KVCache | undefined;
  private readonly native: NativeKVCache | null;
  /** With the native cache and a model the whole-layer calls cover: what runs the calls it `covers` (decode steps). */
  private readonly fused: FusedDecodeStep | null;
  /** Real tokens per row among the positions fed (native cache: position ids from the mask, on the host). */
  private readonly seen: number[];
  private fed = 0;
  private readonly headT: Tensor | null;
  private readonly releaseWeights: () => void;

  constructor(private readonly model: DecoderModel, readonly batch: number, capacity: number, private readonly useCache = true) {
    const c = model.config;
    this.native = useCache && model.nativeDecodeUnsupported() === '' ? new NativeKVCache(batch, c.numLayers, c.numKvHeads, c.headDim, capacity) : null;
    this.fused = this.native && fusedDecodeUnsupported(model) === '' ? new FusedDecodeStep(model) : null;
    this.seen = new Array<number>(batch).fill(0);
    this.headT = model.lmHeadTransposed();
    this.releaseWeights = model.holdTransposedWeights(); // once per session, not once per token
  }

  /** Whether the native in-place cache and kernel run this session. */
  get nativeKernel(): boolean {
    return this.native !== null;
  }

  /** Rows the prompt's forward ran on: the batch, or fewer when repeated prompts shared it (sharedPrefill). */
  prefillRows = 0;

  /** Calls that ran through the whole-layer decode kernels (engine/native_decode_layer.ts). */
  get fusedCalls(): number {
    return this.fused?.calls ?? 0;
  }

  /** Logits [B, V] of the last position of `seqs` ([B, S], mask `masks`); the caller disposes them. */
  nextLogits(seqs: number[][], masks: number[][]): Tensor {
    const B = this.batch;
    const S = seqs[0]!.length;
    if (seqs.length !== B || S <= this.fed) throw new Error(`DecodingSession: expected ${B} rows longer than the ${this.fed} positions fed`);
    const model = this.model;
    if (this.native) {
      const cache = this.native;
      const cap = cache.capacity;
      const positions = seqs.map(() => [] as number[]);
      for (let b = 0; b < B; b++) {
        for (let j = this.fed; j < S; j++) {
          const m = masks[b]![j] ? 1 : 0;
          cache.mask[b * cap + j] = m;
          this.seen[b]! += m;
          positions[b]!.push(m ? this.seen[b]! - 1 : 0); // as positionsFromMask
        }
      }
      const from = this.fed;
      this.fed = S;
      if (from === 0) {
        const shared = this.sharedPrefill(seqs, masks, positions);
        if (shared) return shared;
        this.prefillRows = B;
      }
      return this.nativeLogits(seqs.map((r) => r.slice(from)), positions, cache);
    }
    const last = tf.tidy((): { logits: Tensor; cache?: KVCache } & tf.TensorContainerObject => {
      const fullMask = tf.tensor2d(masks, undefined, 'int32');
      const positions = positionsFromMask(fullMask); // (B, S)
      let out;
      if (this.useCache && this.cache) {
        const ids = tf.tensor2d(seqs.map((r) => [r[S - 1]!]), [B, 1], 'int32');
        out = model.forward(ids, { attentionMask: fullMask, positionIds: tf.slice(positions, [0, S - 1], [B, 1]), cache: this.cache, useCache: true });
      } else {
        out = model.forward(tf.tensor2d(seqs, undefined, 'int32'), { attentionMask: fullMask, positionIds: positions, useCache: this.useCache });
      }
      return { logits: this.lastLogits(out.hidden), cache: out.cache as (KVCache & tf.TensorContainerObject) | undefined };
    });
    if (this.cache) disposeCache(this.cache);
    this.cache = this.useCache ? last.cache : undefined;
    this.fed = S;
    return last.logits;
  }

  /**
   * The first call on the native cache when some rows repeat an earlier row (a prompt sampled k times: labelling,
   * GRPO's groups): the prompt runs once per distinct row into a cache of those rows, whose keys and values are then
   * copied to every row that repeats it, and the logits gathered. Without it the prefill, most of a short
   * generation's work, runs k times over the same tokens. Null when every row is distinct.
   */
  private sharedPrefill(seqs: number[][], masks: number[][], positions: number[][]): Tensor | null {
    const cache = this.native!;
    if (process.env[SHARED_PREFILL_ENV] === '0') return null;
    const source = repeatedRows(seqs, masks);
    if (!source) return null;
    const distinct = [...new Set(source)];
    const U = distinct.length;
    const B = this.batch;
    const cap = cache.capacity;
    const once = new NativeKVCache(U, cache.layers, cache.kvHeads, cache.headDim, cap);
    distinct.forEach((b, u) => once.mask.set(cache.mask.subarray(b * cap, (b + 1) * cap), u * cap));
    const slot = new Map(distinct.map((b, u) => [b, u]));
    const rows = source.map((b) => slot.get(b)!);
    const first = this.nativeLogits(distinct.map((b) => seqs[b]!), distinct.map((b) => positions[b]!), once);
    const logits = tf.gather(first, rows);
    first.dispose();
    this.prefillRows = U;
    const row = cache.kvHeads * cache.headDim * cap; // keys [B, Hkv, hs, cap], values [B, Hkv, cap, hs]: a row is contiguous
    for (let l = 0; l < cache.layers; l++) {
      for (let b = 0; b < B; b++) {
        const u = rows[b]!;
        cache.keys[l]!.set(once.keys[l]!.subarray(u * row, (u + 1) * row), b * row);
        cache.values[l]!.set(once.values[l]!.subarray(u * row, (u + 1) * row), b * row);
      }
    }
    cache.length = once.length;
    return logits;
  }

  /**
   * Logits [B, V] of the last of the new tokens `ids` [B][T] (position ids `positions` [B][T]) on a native cache of B
   * rows: through the whole-layer calls when they cover B·T rows, else the model's forward.
   */
  private nativeLogits(ids: number[][], positions: number[][], cache: NativeKVCache): Tensor {
    const B = ids.length;
    const T = ids[0]!.length;
    if (this.fused?.covers(B * T)) {
      const logits = this.fused.logits(ids, Int32Array.from(positions.flat()), cache);
      return tf.tensor2d(logits, [B, logits.length / B]);
    }
    return tf.tidy(() => {
      const out = this.model.forward(tf.tensor2d(ids, [B, T], 'int32'), { decodeCache: cache, positionIds: tf.tensor2d(positions, [B, T], 'int32') });
      return this.lastLogits(out.hidden, B);
    });
  }

  /** The vocabulary head on the last position only ([B, 1, C] → [B, V]). */
  private lastLogits(hidden: Tensor, B = this.batch): Tensor {
    const h = hidden.shape[1] === 1 ? hidden : tf.slice(hidden, [0, hidden.shape[1]! - 1, 0], [B, 1, -1]);
    return tf.reshape(this.model.logits(h, this.headT), [B, -1]);
  }

  dispose(): void {
    this.headT?.dispose();
    this.releaseWeights();
    if (this.cache) disposeCache(this.cache);
    this.cache = undefined;
  }
}

/** RLHF_SHARED_PREFILL=0 runs every row's prompt, repeated or not (the path before the shared prefill). */
export const SHARED_PREFILL_ENV = 'RLHF_SHARED_PREFILL';

/** For each row, the first row with the same tokens and mask, or null when no row repeats another. */
export function repeatedRows(seqs: readonly number[][], masks: readonly number[][]): number[] | null {
  const first = new Map<string, number>();
  const source = seqs.map((r, b) => {
    const key = `${r.join(',')}|${masks[b]!.join('')}`;
    const s = first.get(key);
    if (s !== undefined) return s;
    first.set(key, b);
    return b;
  });
  return first.size < seqs.length ? source : null;
}

export function generate(model: DecoderModel, inputIds: number[][], attentionMask: number[][] | null, opts: GenerateOptions = {}): GenerateOutput {
  const B = inputIds.length;
  const P = inputIds[0]!.length;
  if (inputIds.some((r) => r.length !== P)) throw new Error('generate: prompts must be padded to one length (left padding)');
  const mask0 = attentionMask ?? inputIds.map((r) => r.map(() => 1));
  const maxNew = opts.maxNewTokens ?? (opts.maxLength !== undefined ? Math.max(0, opts.maxLength - P) : 20);
  const eosRaw = opts.eosTokenId === undefined ? model.generationDefaults?.eosTokenIds ?? configEosTokenIds(model.config) : opts.eosTokenId;
  const eos = new Set(eosRaw === null || eosRaw === undefined ? [] : Array.isArray(eosRaw) ? eosRaw : [eosRaw]);
  const pad = opts.padTokenId ?? model.generationDefaults?.padTokenId ?? model.config.padTokenId ?? (eos.size ? [...eos][0]! : 0);
  const sampling: SamplingOptions = {
    doSample: opts.doSample ?? false, temperature: opts.temperature ?? 1, topK: opts.topK ?? 0, topP: opts.topP ?? 1,
    repetitionPenalty: opts.repetitionPenalty ?? 1,
  };
  const rng = opts.rng ?? new Rng(0);
  // Plain greedy needs only each row's argmax: B indices read back instead of B·V logits.
  const argmaxOnDevice = !sampling.doSample && sampling.repetitionPenalty === 1 && !opts.returnLogProbs;

  const seqs = inputIds.map((r) => [...r]);
  const masks = mask0.map((r) => [...r]);
  const actionMask = inputIds.map(() => [] as number[]);
  const logProbs = inputIds.map(() => [] as number[]);
  const done = new Array<boolean>(B).fill(false);
  if (maxNew <= 0) return { sequences: seqs, attentionMask: masks, actionMask, logProbs: opts.returnLogProbs ? logProbs : undefined, promptLength: P };
  const session = new DecodingSession(model, B, P + maxNew, opts.useCache ?? true);
  try {
    for (let step = 0; step < maxNew; step++) {
      // 1. logits of the last position (from the cache when there is one), or their argmax alone
      const logits = session.nextLogits(seqs, masks);
      let all: Float32Array | null = null;
      let best: Int32Array | null = null;
      if (argmaxOnDevice) {
        const idx = tf.argMax(logits, 1);
        best = idx.dataSync() as Int32Array;
        idx.dispose();
      } else all = logits.dataSync() as Float32Array;
      const V = logits.shape[1]!;
      logits.dispose();

      // 2. choose each row's token on the host
      for (let b = 0; b < B; b++) {
        let token: number;
        if (done[b]) {
          token = pad;
          actionMask[b]!.push(0);
          if (opts.returnLogProbs) logProbs[b]!.push(0);
        } else {
          if (best) token = best[b]!;
          else {
            const row = all!.slice(b * V, (b + 1) * V);
            const raw = opts.returnLogProbs ? row.slice() : null;
            if (sampling.repetitionPenalty !== 1) applyRepetitionPenalty(row, seqs[b]!.filter((_, j) => masks[b]![j]), sampling.repetitionPenalty);
            token = chooseToken(row, sampling, rng);
            if (raw) logProbs[b]!.push(logSoftmaxAt(raw, token));
          }
          actionMask[b]!.push(1);
          if (eos.has(token)) done[b] = true;
        }
        seqs[b]!.push(token);
        masks[b]!.push(1);
      }
      if (done.every(Boolean)) break;
    }
  } finally {
    session.dispose();
  }
  return { sequences: seqs, attentionMask: masks, actionMask, logProbs: opts.returnLogProbs ? logProbs : undefined, promptLength: P };
}

function disposeCache(c: KVCache): void {
  for (const t of [...c.keys, ...c.values]) t.dispose();
}

export type { Tensor };
