/**
 * Per-token log-probs of answer tokens under a policy or its reference, in one forward over prompt + answer.
 *
 * Legend: B rollouts, P padded prompt length, N answer length, V vocabulary. Log-probs (and values) are taken at the
 * position *before* each answer token (the state its action was chosen in), so position P−1+t scores answer token t.
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { headLogProbsAndEntropy } from '../models/ops/head_logprobs.js';
import { positionsFromMask } from '../models/ops/positions.js';
import type { ValueModel } from '../models/value_model.js';

/** Hidden states [B, N, C] of the positions that predict the N answer tokens: one forward over ids [B, P+N]. */
export function answerHidden(model: DecoderModel, ids: Tensor, mask: Tensor, P: number, N: number): Tensor {
  const [B] = ids.shape as [number];
  const { hidden } = model.forward(ids, { attentionMask: mask, positionIds: positionsFromMask(mask) }); // (B, P+N, C)
  return tf.slice(hidden, [0, P - 1, 0], [B, N, -1]);
}

/**
 * log π(answer tokens) [B, N] and the entropy of π at each answer position [B, N], from the hidden states through
 * the LM head in row chunks (no [B, N, V] logits: see headLogProbsAndEntropy).
 */
export function answerLogProbsAndEntropy(model: DecoderModel, ids: Tensor, mask: Tensor, answer: Tensor, P: number): { logp: Tensor; entropy: Tensor } {
  const [B, N] = answer.shape as [number, number];
  const h = answerHidden(model, ids, mask, P, N);
  const both = headLogProbsAndEntropy(tf.reshape(h, [B * N, h.shape[2]!]), model.lmHeadWeight(), tf.reshape(answer, [B * N]), undefined, model.config.finalSoftcap, model.headFrozen()); // (B·N, 2)
  return {
    logp: tf.reshape(tf.slice(both, [0, 0], [B * N, 1]), [B, N]),
    entropy: tf.reshape(tf.slice(both, [0, 1], [B * N, 1]), [B, N]),
  };
}

/** log π(answer tokens) [B, N]. */
export function answerLogProbs(model: DecoderModel, ids: Tensor, mask: Tensor, answer: Tensor, P: number): Tensor {
  return tf.tidy(() => answerLogProbsAndEntropy(model, ids, mask, answer, P).logp);
}

/** Critic values of the states before each answer token [B, N]. */
export function answerValues(critic: ValueModel, ids: Tensor, mask: Tensor, P: number, N: number): Tensor {
  const values = critic.values(ids, mask); // (B, P+N)
  return tf.slice(values, [0, P - 1], [-1, N]);
}

/** Runs `fn` with the model's adapter switched off (the initial model / reward model view of a shared base). */
export function withoutAdapter<T>(model: DecoderModel, fn: () => T): T {
  const saved = model.loraEnabled;
  model.loraEnabled = false;
  try {
    return fn();
  } finally {
    model.loraEnabled = saved;
  }
}

/**
 * log π_ref(answer tokens) [B, N]: the reference is its own model, or (when it is the policy object itself, a LoRA
 * run) the policy read with its adapter off.
 */
export function referenceLogProbs(policy: DecoderModel, reference: DecoderModel, ids: Tensor, mask: Tensor, answer: Tensor, P: number): Tensor {
  return reference === policy
    ? withoutAdapter(policy, () => answerLogProbs(policy, ids, mask, answer, P))
    : answerLogProbs(reference, ids, mask, answer, P);
}
