/**
 * The workloads the benchmark times, each written as the trainers and generation run them: a training step
 * (forward, causal-LM loss, backward), a full SFT step (plus clipping and AdamW), batched generation with
 * the KV cache, and single decode steps at a chosen position.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import type { DecoderModel, KVCache } from '../models/decoder.js';
import { IGNORE_INDEX } from '../models/ops/loss.js';
import { generate } from '../models/generation.js';
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
 * tokens: the same calls generation makes, timed one by one, median of `steps`.
 */
export function decodeStepMs(model: DecoderModel, rng: Rng, B: number, position: number, steps: number): number {
  const V = model.config.vocabSize;
  const headT = model.lmHeadTransposed();
  const releaseWeights = model.holdTransposedWeights();
  let cache = tf.tidy(() => {
    const ids = tf.tensor2d(randomIds(rng, B, position, V), undefined, 'int32');
    return model.forward(ids, { useCache: true }).cache as KVCache & tf.TensorContainerObject;
  });
  const times: number[] = [];
  try {
    for (let i = 0; i < steps; i++) {
      const S = position + i + 1;
      const t = timeIt(() => {
        const out = tf.tidy(() => {
          const ids = tf.tensor2d(randomIds(rng, B, 1, V), [B, 1], 'int32');
          const o = model.forward(ids, {
            attentionMask: tf.ones([B, S], 'int32'), positionIds: tf.fill([B, 1], S - 1, 'int32'), cache, useCache: true,
          });
          return { logits: model.logits(o.hidden, headT), cache: o.cache as KVCache & tf.TensorContainerObject };
        });
        out.logits.dataSync();
        out.logits.dispose();
        return out.cache;
      });
      tf.dispose(cache);
      cache = t.result;
      times.push(t.wallMs);
    }
  } finally {
    tf.dispose(cache);
    headT?.dispose();
    releaseWeights();
  }
  return median(times);
}
