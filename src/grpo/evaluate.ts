/**
 * Accuracy of a model on a verifiable set: greedy (one completion per prompt) or pass@k (k sampled completions, the
 * unbiased estimator of Chen et al. 2021), scored by the same reward sources as train_grpo. A completion counts as
 * solved when its weighted reward reaches `threshold` (1: an `accuracy` hit).
 */
import { Rng } from '../engine/rng.js';
import type { DecoderModel } from '../models/decoder.js';
import { generate } from '../models/generation.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import { sampleRollouts } from '../rollout/sample.js';
import type { RewardSet } from '../rewards/combine.js';
import { repeatAndPad, type GrpoPrompt } from './data.js';

export interface EvaluateOptions {
  /** Completions per prompt: 1 = greedy decoding; more = sampled, for pass@k. */
  numSamples: number;
  batchSize: number;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  threshold: number;
  seed: number;
  onBatch?: (done: number, total: number) => void;
}

export interface EvaluatedPrompt {
  prompt: string;
  completions: string[];
  rewards: number[];
  solved: number;
}

export interface EvaluateResult {
  /** Share of prompts solved: greedy accuracy, or pass@k with k = numSamples. */
  passAtK: number;
  /** pass@1 estimated from all samples (equals passAtK when greedy). */
  passAt1: number;
  solvedPrompts: number;
  meanReward: number;
  /** Mean per reward source, NaN-aware. */
  perSource: Record<string, number>;
  prompts: EvaluatedPrompt[];
}

/** Unbiased pass@k from n samples of which c are correct: 1 − C(n−c, k) / C(n, k). */
export function passAtK(n: number, c: number, k: number): number {
  if (n - c < k) return 1;
  let p = 1;
  for (let i = n - c + 1; i <= n; i++) p *= 1 - k / i;
  return 1 - p;
}

export async function evaluatePrompts(model: DecoderModel, tokenizer: Tokenizer, rewards: RewardSet, prompts: GrpoPrompt[], o: EvaluateOptions): Promise<EvaluateResult> {
  const eos = tokenizer.eosTokenId ?? model.config.eosTokenId;
  const pad = tokenizer.padTokenId ?? model.config.padTokenId ?? eos ?? 0;
  const k = o.numSamples;
  const rng = new Rng(o.seed);
  const out: EvaluatedPrompt[] = [];
  const sums = new Map<string, { s: number; n: number }>(rewards.names.map((n) => [n, { s: 0, n: 0 }]));
  let rewardSum = 0;
  for (let i = 0; i < prompts.length; i += o.batchSize) {
    const part = prompts.slice(i, i + o.batchSize);
    const { ids, mask } = repeatAndPad(part, k, pad);
    let answers: number[][];
    if (k === 1) {
      const gen = generate(model, ids, mask, { maxNewTokens: o.maxNewTokens, doSample: false, eosTokenId: eos, padTokenId: pad });
      answers = gen.sequences.map((s, b) => s.slice(ids[0]!.length).slice(0, gen.actionMask[b]!.reduce((a, v) => a + v, 0)));
    } else {
      const r = sampleRollouts(model, ids, mask, { maxNewTokens: o.maxNewTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, eosTokenId: eos, padTokenId: pad, rng });
      answers = r.answers.map((a, b) => a.slice(0, r.lengths[b]));
    }
    const completions = answers.map((a) => tokenizer.decode(a, { skipSpecialTokens: true }));
    const rowPrompt = (b: number) => part[Math.floor(b / k)]!;
    const columns = [...new Set(part.flatMap((p) => Object.keys(p.extra)))];
    const extra: Record<string, unknown[]> = Object.fromEntries(columns.map((c) => [c, completions.map((_, b) => rowPrompt(b).extra[c])]));
    extra.completion_ids = answers;
    const scored = await rewards.score({ prompts: completions.map((_, b) => rowPrompt(b).text), completions, extra, promptIds: completions.map((_, b) => rowPrompt(b).ids), completionIds: answers });
    rewards.names.forEach((n, f) => {
      for (const v of scored.perSource[f]!) if (v !== null) {
        sums.get(n)!.s += v;
        sums.get(n)!.n += 1;
      }
    });
    part.forEach((p, j) => {
      const rs = scored.total.slice(j * k, (j + 1) * k);
      rewardSum += rs.reduce((a, v) => a + v, 0);
      out.push({ prompt: p.text, completions: completions.slice(j * k, (j + 1) * k), rewards: rs, solved: rs.filter((v) => v >= o.threshold).length });
    });
    o.onBatch?.(Math.min(i + o.batchSize, prompts.length), prompts.length);
  }
  const n = Math.max(1, out.length);
  return {
    passAtK: out.reduce((a, p) => a + passAtK(k, p.solved, k), 0) / n,
    passAt1: out.reduce((a, p) => a + p.solved / k, 0) / n,
    solvedPrompts: out.filter((p) => p.solved > 0).length,
    meanReward: rewardSum / (n * k),
    perSource: Object.fromEntries([...sums].map(([name, { s, n: c }]) => [name, c ? s / c : NaN])),
    prompts: out,
  };
}
