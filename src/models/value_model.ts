/**
 * A backbone plus a value head: the shape of both a reward model (one score per sequence) and a PPO critic (one value
 * per position). Positions come from the attention mask, so left-padded prompts (PPO rollouts) and right-padded
 * sequences (reward-model training) give the same values for the same real tokens.
 *
 * Legend: B batch, T time (padded length), C hidden width.
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from './decoder.js';
import type { ValueHead } from './value_head.js';
import { positionsFromMask } from './ops/positions.js';

/**
 * How per-position values become one score per sequence: the value at the last real token, the mean or the sum over
 * the real tokens, or the sum or mean over the ANSWER's tokens only (`answer_sum`, `answer_mean`: the prompt's
 * positions, shared by both answers of a pair, add nothing then, neither a per-prompt offset nor a length confound).
 */
export const VALUE_REDUCTIONS = ['last', 'mean', 'sum', 'answer_sum', 'answer_mean'] as const;
export type ValueReduction = (typeof VALUE_REDUCTIONS)[number];

/** Whether a reduction reads only the answer's positions (its callers must then pass an answer mask). */
export function readsAnswerOnly(reduction: ValueReduction): boolean {
  return reduction === 'answer_sum' || reduction === 'answer_mean';
}

export class ValueModel {
  /**
   * @param adapter whether the backbone's LoRA adapter is applied: a reward model that shares its backbone with a
   * LoRA-trained critic reads the frozen base with `adapter: false`.
   * @param padTokenId the id that is never the scored token (transformers' rule, see `scoreIndices`); default the
   * backbone config's `pad_token_id`.
   */
  constructor(
    readonly backbone: DecoderModel,
    readonly head: ValueHead,
    readonly adapter = true,
    readonly padTokenId: number | null = backbone.config.padTokenId,
  ) {
    // The head reads the decoder's last hidden states: after OPT's project_out those are word_embed_proj_dim wide
    // (OPT-350m: 512, not hidden_size 1024), as transformers' OPTForSequenceClassification's score layer.
    const C = backbone.config.wordEmbedDim;
    if (head.weight.shape.join() !== `1,${C}`) {
      throw new Error(`value head weight is [${head.weight.shape}] but the backbone's output width is ${C} (expected [1, ${C}])`);
    }
  }

  /** Values [B, T] of ids [B, T] with their 0/1 attention mask [B, T] (any padding side). */
  values(inputIds: Tensor, attentionMask: Tensor, training = false): Tensor {
    const saved = this.backbone.loraEnabled;
    this.backbone.loraEnabled = saved && this.adapter;
    try {
      const positionIds = positionsFromMask(attentionMask);
      const { hidden } = this.backbone.forward(inputIds, { attentionMask, positionIds, training }); // (B, T, C)
      return this.head.forward(hidden); // (B, T)
    } finally {
      this.backbone.loraEnabled = saved;
    }
  }

  /** One score per sequence [B]. */
  score(inputIds: Tensor, attentionMask: Tensor, reduction: ValueReduction = 'last', answerMask?: Tensor): Tensor {
    return tf.tidy(() => reduceValues(this.values(inputIds, attentionMask), attentionMask, reduction, inputIds, this.padTokenId, answerMask));
  }
}

/**
 * The position scored in each row [B] (int32): transformers' `<Family>ForSequenceClassification` reads the last
 * token that is not `pad_token_id` (whichever side the padding is on; a pad id inside the text, such as an EOS that
 * doubles as pad, is skipped too). Positions outside the mask never count either. Without a pad id: the last
 * position whose mask is 1. A row with no such token scores position 0, as transformers' argmax gives.
 */
export function scoreIndices(attentionMask: Tensor, inputIds?: Tensor, padTokenId: number | null = null): Tensor {
  return tf.tidy(() => {
    const [, T] = attentionMask.shape as [number, number];
    let keep = tf.cast(attentionMask, 'float32'); // (B, T)
    if (inputIds && padTokenId !== null) keep = tf.mul(keep, tf.cast(tf.notEqual(inputIds, tf.scalar(padTokenId, 'int32')), 'float32'));
    const positions = tf.add(tf.range(0, T, 1, 'float32'), 1); // (T)
    return tf.cast(tf.argMax(tf.mul(keep, positions), 1), 'int32'); // (B)
  });
}

/**
 * values [B, T] → one number per row [B]. 'last': the value at the scored position (`scoreIndices`). 'mean': the mean
 * over positions whose mask is 1. 'sum': their sum (a score that adds up per token, such as a lexicon's word
 * valences). 'answer_sum' / 'answer_mean': the sum / mean over positions where both the mask and `answerMask` [B, T]
 * (1 on the answer's tokens) are 1; a row with no answer token scores 0.
 */
export function reduceValues(
  values: Tensor, attentionMask: Tensor, reduction: ValueReduction, inputIds?: Tensor, padTokenId: number | null = null, answerMask?: Tensor,
): Tensor {
  return tf.tidy(() => {
    const [, T] = values.shape as [number, number];
    let mask = tf.cast(attentionMask, 'float32'); // (B, T)
    if (readsAnswerOnly(reduction)) {
      if (!answerMask) throw new Error(`reward reduction "${reduction}" reads the answer's tokens only, so it needs the answer's positions (an answer mask)`);
      if (answerMask.shape.join() !== values.shape.join()) throw new Error(`reduceValues: answer mask [${answerMask.shape}] must be [${values.shape}] as the values`);
      mask = tf.mul(mask, tf.cast(answerMask, 'float32'));
    }
    const total = () => tf.sum(tf.mul(values, mask), 1);
    if (reduction === 'mean' || reduction === 'answer_mean') return tf.div(total(), tf.maximum(tf.sum(mask, 1), 1));
    if (reduction === 'sum' || reduction === 'answer_sum') return total();
    const last = scoreIndices(attentionMask, inputIds, padTokenId); // (B)
    // A 0/1 mask of the scored position by comparison, not tf.oneHot, which refuses a depth of 1 (a one-token input).
    const at = tf.cast(tf.equal(tf.reshape(tf.range(0, T, 1, 'int32'), [1, T]), tf.reshape(last, [-1, 1])), 'float32'); // (B, T)
    return tf.sum(tf.mul(values, at), 1);
  });
}

/**
 * Answer masks [B][T] of right-padded rows: row b is 1 from its prompt's end `promptLens[b]` to its sequence's end
 * `lengths[b]` (prompt + answer tokens), 0 elsewhere.
 */
export function answerMaskRows(promptLens: readonly number[], lengths: readonly number[], T: number): number[][] {
  return promptLens.map((p, b) => Array.from({ length: T }, (_, t) => (t >= p && t < lengths[b]! ? 1 : 0)));
}

/** Index of the last 1 in each row of a 0/1 mask (−1 for an all-zero row). */
export function lastRealIndex(mask: number[][]): number[] {
  return mask.map((row) => row.lastIndexOf(1));
}
