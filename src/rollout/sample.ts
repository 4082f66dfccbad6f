/**
 * Step 1 of every online-RL batch: the policy samples answers to left-padded prompts (KV cache, each row stops at
 * its first EOS), returned as padded id rows with the masks the scoring forward needs.
 *
 * Legend: B rollouts, P padded prompt length, N answer length (the longest row's).
 */
import type { Rng } from '../engine/rng.js';
import type { DecoderModel } from '../models/decoder.js';
import { generate } from '../models/generation.js';

export interface SampleOptions {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  eosTokenId: number | null;
  padTokenId: number;
  rng: Rng;
}

export interface Rollouts {
  /** [B, P+N]: left-padded prompt then the answer, pad after a row's EOS. */
  sequences: number[][];
  /** [B, P+N]: the prompt's mask then the action mask (padding after EOS masked out). */
  fullMask: number[][];
  /** [B, N]: the answer part of each sequence. */
  answers: number[][];
  /** [B, N]: 1 on answer tokens through the first EOS inclusive. */
  actionMask: number[][];
  /** Answer tokens per row (Σ actionMask). */
  lengths: number[];
  P: number;
  N: number;
  seconds: number;
}

export function sampleRollouts(policy: DecoderModel, promptIds: number[][], promptMask: number[][], o: SampleOptions): Rollouts {
  const t0 = performance.now();
  const P = promptIds[0]!.length;
  const gen = generate(policy, promptIds, promptMask, {
    maxNewTokens: o.maxNewTokens, doSample: true, temperature: o.temperature, topK: o.topK, topP: o.topP,
    eosTokenId: o.eosTokenId, padTokenId: o.padTokenId, rng: o.rng,
  });
  const N = gen.sequences[0]!.length - P;
  return {
    sequences: gen.sequences,
    fullMask: promptMask.map((row, b) => [...row, ...gen.actionMask[b]!]),
    answers: gen.sequences.map((s) => s.slice(P)),
    actionMask: gen.actionMask,
    lengths: gen.actionMask.map((row) => row.reduce((a, v) => a + v, 0)),
    P,
    N,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Rollouts that ended with EOS. */
export function endedWithEos(r: Rollouts, eosTokenId: number | null): boolean[] {
  return r.answers.map((a, b) => eosTokenId !== null && r.lengths[b]! > 0 && a[r.lengths[b]! - 1] === eosTokenId);
}
