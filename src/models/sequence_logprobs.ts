/**
 * Summed log-probabilities of completions (log π(y | x) = Σ_t log π(y_t | x, y_<t)), the quantity every
 * preference-optimization loss (DPO, IPO, SimPO, ORPO, KTO) is built from, straight from hidden states.
 *
 * Only the positions that predict a completion token go through the LM head (no [R, T, V] logits, and no work on
 * prompt tokens): their hidden rows are gathered (with the embedding's gather, whose gradient runs on every
 * backend), scored by headLogProbsAndEntropy in chunks, and summed per sequence by a [R, N] 0/1 product.
 *
 * Legend: R rows (sequences), T padded length, C hidden width, N completion tokens in the whole batch, V vocabulary.
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from './decoder.js';
import { embedding } from './ops/embedding.js';
import { headLogProbsAndEntropy } from './ops/head_logprobs.js';
import { positionsFromMask } from './ops/positions.js';
import { isPackedWeight } from './ops/packed_weight.js';
import { packedRowMean } from './ops/packed_linear.js';

/** Right-padded rows with a 0/1 mask of the tokens whose log-probability counts (the completion). */
export interface CompletionBatch {
  /** [R][T] token ids, right-padded. */
  inputIds: number[][];
  /** [R][T] 1 at real tokens. */
  attentionMask: number[][];
  /** [R][T] 1 at completion tokens (never at position 0: a token needs a prefix to be predicted). */
  completionMask: number[][];
}

export interface CompletionLogProbs {
  /** [R] Σ log π(y_t) over each row's completion tokens (differentiable). */
  sums: Tensor;
  /** Completion tokens per row. */
  counts: number[];
  /** [R] mean logit over the vocabulary and the completion positions of each row (no gradient; TRL's logits/*). */
  meanLogits: Tensor;
}

/** Where the completion tokens are: predicting positions (flat r·T + t−1), their targets, and each one's row. */
function completionPositions(b: CompletionBatch): { rows: number[]; targets: number[]; owner: number[]; counts: number[] } {
  const R = b.inputIds.length;
  const T = b.inputIds[0]?.length ?? 0;
  const rows: number[] = [];
  const targets: number[] = [];
  const owner: number[] = [];
  const counts = new Array<number>(R).fill(0);
  for (let r = 0; r < R; r++) {
    if (b.inputIds[r]!.length !== T || b.completionMask[r]!.length !== T) throw new Error(`completionLogProbs: row ${r} is not ${T} long`);
    for (let t = 1; t < T; t++) {
      if (!b.completionMask[r]![t]) continue;
      rows.push(r * T + t - 1);
      targets.push(b.inputIds[r]![t]!);
      owner.push(r);
      counts[r]!++;
    }
    if (b.completionMask[r]![0]) throw new Error(`completionLogProbs: row ${r} marks its first token as completion (nothing predicts it)`);
  }
  return { rows, targets, owner, counts };
}

/**
 * Completion log-probs of a batch under `model` (its LoRA adapter as it is switched). Positions come from the mask,
 * which for right padding are 0..len−1, the same as the unpadded sequence's.
 */
export function completionLogProbs(model: DecoderModel, batch: CompletionBatch, training = false): CompletionLogProbs {
  const pos = completionPositions(batch);
  const R = batch.inputIds.length;
  const T = batch.inputIds[0]?.length ?? 0;
  const N = pos.rows.length;
  if (N === 0) throw new Error('completionLogProbs: no completion tokens in the batch');
  const out = tf.tidy(() => {
    const ids = tf.tensor2d(batch.inputIds, [R, T], 'int32');
    const mask = tf.tensor2d(batch.attentionMask, [R, T], 'int32');
    const { hidden } = model.forward(ids, { attentionMask: mask, positionIds: positionsFromMask(mask), training }); // (R, T, C)
    const C = hidden.shape[2]!;
    const h = embedding(tf.reshape(hidden, [R * T, C]), tf.tensor1d(pos.rows, 'int32')); // (N, C)
    const head = model.lmHeadWeight(); // (V, C)
    const logp = tf.slice(headLogProbsAndEntropy(h, head, tf.tensor1d(pos.targets, 'int32'), undefined, model.config.finalSoftcap, model.headFrozen()), [0, 0], [N, 1]); // (N, 1)
    const assign = new Float32Array(R * N);
    pos.owner.forEach((r, n) => (assign[r * N + n] = 1));
    const sums = tf.reshape(tf.matMul(tf.tensor2d(assign, [R, N]), logp), [R]); // (R)
    // mean over v of z_v = h·(Σ_v W_v)/V: TRL's logits/chosen without the logits (not on the loss's path, so
    // the backward pass never visits it)
    const meanLogits = tf.tidy(() => {
      const perToken = tf.matMul(h, tf.reshape(isPackedWeight(head) ? packedRowMean(head) : tf.mean(head, 0), [C, 1])); // (N, 1)
      const perRow = tf.reshape(tf.matMul(tf.tensor2d(assign, [R, N]), perToken), [R]);
      return tf.div(perRow, tf.tensor1d(pos.counts.map((c) => Math.max(c, 1))));
    });
    return { sums, meanLogits };
  });
  return { ...out, counts: pos.counts };
}

/** The same, as numbers, with no gradient (reference scoring, evaluation). */
export function completionLogProbArrays(model: DecoderModel, batch: CompletionBatch): { sums: number[]; counts: number[]; meanLogits: number[] } {
  const r = completionLogProbs(model, batch, false);
  const sums = Array.from(r.sums.dataSync());
  const meanLogits = Array.from(r.meanLogits.dataSync());
  r.sums.dispose();
  r.meanLogits.dispose();
  return { sums, counts: r.counts, meanLogits };
}
