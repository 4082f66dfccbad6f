/**
 * Batched generation for left-padded prompts with a KV cache: per-row EOS stop, greedy or sampled tokens, and what
 * PPO needs back (an action mask ending at the first EOS inclusive, and per-token log-probs).
 * Positions come from the attention mask, so a left-padded prompt generates exactly what it generates alone.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import type { DecoderModel, KVCache } from './decoder.js';
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
  const useCache = opts.useCache ?? true;

  const seqs = inputIds.map((r) => [...r]);
  const masks = mask0.map((r) => [...r]);
  const actionMask = inputIds.map(() => [] as number[]);
  const logProbs = inputIds.map(() => [] as number[]);
  const done = new Array<boolean>(B).fill(false);
  const headT = model.lmHeadTransposed();
  const releaseWeights = model.holdTransposedWeights(); // once per call, not once per token
  let cache: KVCache | undefined;
  try {
    for (let step = 0; step < maxNew; step++) {
      // 1. logits of the last position, from the cache when we have one
      const last = tf.tidy((): { logits: Tensor; cache?: KVCache } & tf.TensorContainerObject => {
        const fullMask = tf.tensor2d(masks, undefined, 'int32');
        const positions = positionsFromMask(fullMask); // (B, S)
        const S = seqs[0]!.length;
        let out;
        if (useCache && cache) {
          const ids = tf.tensor2d(seqs.map((r) => [r[S - 1]!]), [B, 1], 'int32');
          out = model.forward(ids, { attentionMask: fullMask, positionIds: tf.slice(positions, [0, S - 1], [B, 1]), cache, useCache: true });
        } else {
          out = model.forward(tf.tensor2d(seqs, undefined, 'int32'), { attentionMask: fullMask, positionIds: positions, useCache });
        }
        const h = tf.slice(out.hidden, [0, out.hidden.shape[1]! - 1, 0], [B, 1, -1]);
        const logits = tf.reshape(model.logits(h, headT), [B, -1]);
        return { logits, cache: out.cache as (KVCache & tf.TensorContainerObject) | undefined };
      });
      if (cache) disposeCache(cache);
      cache = useCache ? last.cache : undefined;
      const all = last.logits.dataSync() as Float32Array;
      last.logits.dispose();
      const V = all.length / B;

      // 2. choose each row's token on the host
      for (let b = 0; b < B; b++) {
        const row = all.slice(b * V, (b + 1) * V);
        let token: number;
        if (done[b]) {
          token = pad;
          actionMask[b]!.push(0);
          if (opts.returnLogProbs) logProbs[b]!.push(0);
        } else {
          const raw = opts.returnLogProbs ? row.slice() : null;
          if (sampling.repetitionPenalty !== 1) applyRepetitionPenalty(row, seqs[b]!.filter((_, j) => masks[b]![j]), sampling.repetitionPenalty);
          token = chooseToken(row, sampling, rng);
          actionMask[b]!.push(1);
          if (raw) logProbs[b]!.push(logSoftmaxAt(raw, token));
          if (eos.has(token)) done[b] = true;
        }
        seqs[b]!.push(token);
        masks[b]!.push(1);
      }
      if (done.every(Boolean)) break;
    }
  } finally {
    headT?.dispose();
    releaseWeights();
    if (cache) disposeCache(cache);
  }
  return { sequences: seqs, attentionMask: masks, actionMask, logProbs: opts.returnLogProbs ? logProbs : undefined, promptLength: P };
}

function disposeCache(c: KVCache): void {
  for (const t of [...c.keys, ...c.values]) t.dispose();
}

export type { Tensor };
