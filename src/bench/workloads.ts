/**
 * The workloads the benchmark times, each written as the trainers and generation run them: a training step
 * (forward, causal-LM loss, backward), a full SFT step (plus clipping and AdamW), batched generation with
 * the KV cache, and single decode steps at a chosen position.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import type { DecoderModel } from '../models/decoder.js';
import { IGNORE_INDEX } from '../models/ops/loss.js';
import { DecodingSession, generate } from '../models/generation.js';
import { Optimization } from '../trainer/optimization.js';
import { createStrategy } from '../strategies/strategy.js';
import { median, timeIt } from './measure.js';

export function randomIds(rng: Rng, B: number, T: number, V: number): number[][] {
  return Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(V)));
}

/** Gradients of the causal-LM loss (as the trainers compute it) for every parameter, dropout on; returns the loss. */
export function trainStep(model: DecoderModel, ids: Tensor, labels: Tensor = ids): number {
  const vars = model.namedParameters().map(([, v]) => v);
  const { value, grads } = tf.variableGrads(() => model.lmLoss(model.forward(ids, { training: true }).hidden, labels) as tf.Scalar, vars);
  const loss = value.dataSync()[0]!;
  value.dispose();
  tf.dispose(grads);
  return loss;
}

/** SFT labels: the first quarter of each row is "prompt" (ignored by the loss), the rest is the response. */
export function sftLabels(ids: number[][]): number[][] {
  return ids.map((row) => row.map((t, j) => (j < row.length >> 2 ? IGNORE_INDEX : t)));
}

/**
 * A stage's update as the trainers build it, in one process: AdamW (no decay on biases and norms), global-norm
 * clipping at 1, a constant learning rate, gradients accumulated over `accumulationSteps` micro-batches.
 */
export function benchOptimization(params: [string, tf.Variable][], lr: number, opts: { accumulationSteps?: number; weightDecay?: number } = {}): Optimization {
  return new Optimization(params, {
    lr, weightDecay: opts.weightDecay ?? 0, gradClip: 1, accumulationSteps: opts.accumulationSteps ?? 1, warmupSteps: 0, totalSteps: 1,
    schedule: 'constant',
  }, createStrategy('naive'));
}

/** The SFT stage's update: every parameter (with LoRA: the adapter's), weight decay 0.01. */
export function sftOptimization(model: DecoderModel, accumulationSteps: number): Optimization {
  const params: [string, tf.Variable][] = model.lora ? model.lora.trainableVariables().map((v) => [v.name, v]) : model.namedParameters();
  return benchOptimization(params, 2e-5, { accumulationSteps, weightDecay: 0.01 });
}

/**
 * One SFT step over micro-batches (ids and labels [b, T] each): the masked loss (model.lmLoss, as the SFT trainer)
 * and its gradients per micro-batch, then clipping and AdamW; times the backward passes and the update apart.
 */
export function sftStep(model: DecoderModel, opt: Optimization, micro: { ids: Tensor; labels: Tensor }[]): { loss: number; backwardMs: number; optimizerMs: number } {
  const b = timeIt(() => micro.reduce((sum, m) => sum + opt.backward(() => model.lmLoss(model.forward(m.ids, { training: true }).hidden, m.labels) as tf.Scalar).loss, 0));
  const s = timeIt(() => opt.step());
  return { loss: b.result / micro.length, backwardMs: b.wallMs, optimizerMs: s.wallMs };
}

/** Greedy generation of exactly `newTokens` tokens for every row (no EOS), with the KV cache. */
export function generateTokens(model: DecoderModel, prompts: number[][], newTokens: number): number {
  const out = generate(model, prompts, null, { maxNewTokens: newTokens, eosTokenId: null, useCache: true });
  return out.sequences[0]!.length - prompts[0]!.length;
}

/**
 * Milliseconds per decode step (one new token for each of B rows, logits read back) after a prompt of `position`
 * tokens: the calls generation makes (its DecodingSession), timed one by one: the medians of `steps` wall and CPU
 * times (CPU time varies less than wall time on a loaded machine).
 */
export function decodeStepMs(model: DecoderModel, rng: Rng, B: number, position: number, steps: number): { wallMs: number; cpuMs: number } {
  const V = model.config.vocabSize;
  const session = new DecodingSession(model, B, position + steps);
  const seqs = randomIds(rng, B, position, V);
  const masks = seqs.map((r) => r.map(() => 1));
  const times: number[] = [];
  const cpus: number[] = [];
  try {
    session.nextLogits(seqs, masks).dispose();
    for (let i = 0; i < steps; i++) {
      const next = randomIds(rng, B, 1, V);
      seqs.forEach((r, b) => r.push(next[b]![0]!));
      masks.forEach((r) => r.push(1));
      const t = timeIt(() => {
        const logits = session.nextLogits(seqs, masks);
        logits.dataSync();
        logits.dispose();
      });
      times.push(t.wallMs);
      cpus.push(t.cpuMs);
    }
  } finally {
    session.dispose();
  }
  return { wallMs: median(times), cpuMs: median(cpus) };
}
