/**
 * The training objective on one batch: the policy's completion log-probs (one forward over all rows), the
 * reference's (given as numbers: scored beforehand with no gradient, or precomputed), the loss the config names,
 * and TRL's metrics into `aux`. The trainer, the evaluation and the benchmark call the same function.
 *
 * Metrics (TRL's names): rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins (kto: no accuracies,
 * and the means are over the batch's desirable/undesirable examples), logps/chosen, logps/rejected (mean summed
 * log-probs), logits/chosen, logits/rejected (mean logit over the vocabulary and the completion tokens), objective/kl
 * (kto: TRL's `kl`, the KL baseline z₀), loss/nll and loss/log_odds_ratio (orpo).
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { completionLogProbArrays, completionLogProbs, type CompletionBatch } from '../models/sequence_logprobs.js';
import type { DpoBatch } from './data.js';
import { ktoLoss, needsReference, pairLoss, rewardMetrics, type DpoLossParams, type DpoLossType } from './losses.js';
import { withoutAdapter } from '../rollout/logprobs.js';

export interface ObjectiveOptions extends DpoLossParams {
  lossType: DpoLossType;
  /** kto: the mean of a number over the ranks (an all-reduce every rank calls in step); default: one process. */
  meanOverRanks?: (x: number) => number;
}


/** Where the reference's log-probs come from. */
export type ReferenceSource =
  | { kind: 'none' } // reference-free losses
  | { kind: 'model'; model: DecoderModel } // a separate frozen model
  | { kind: 'adapter_off'; model: DecoderModel } // the policy's base with its LoRA adapter off
  | { kind: 'precomputed' }; // stored on the items

/** Summed reference log-probs of every row of a batch [2B], or null for reference-free losses. */
export function referenceRowLogps(ref: ReferenceSource, batch: DpoBatch): number[] | null {
  switch (ref.kind) {
    case 'none':
      return null;
    case 'model':
      return completionLogProbArrays(ref.model, batch.sequences).sums;
    case 'adapter_off':
      return withoutAdapter(ref.model, () => completionLogProbArrays(ref.model, batch.sequences).sums);
    case 'precomputed': {
      const fromItems = batch.kind === 'pairs'
        ? [...batch.items.map((p) => p.refChosen), ...batch.items.map((p) => p.refRejected)]
        : [...batch.items.map((e) => e.ref), ...batch.items.map((e) => e.refKl)];
      if (fromItems.some((x) => x === undefined)) throw new Error('referenceRowLogps: an item has no precomputed reference log-probs');
      return fromItems as number[];
    }
  }
}

/** Summed log-probs of rows under a model, in batches of `rows` sequences (precomputation, no gradient). */
export function scoreRows(model: DecoderModel, batches: Iterable<CompletionBatch>): number[] {
  const out: number[] = [];
  for (const b of batches) out.push(...completionLogProbArrays(model, b).sums);
  return out;
}

/** The loss of one batch; metrics go to `aux` (scalars). `refRows`: the reference's row sums (null if reference-free). */
export function dpoObjective(policy: DecoderModel, batch: DpoBatch, refRows: number[] | null, o: ObjectiveOptions, aux: Record<string, Tensor>, training: boolean): tf.Scalar {
  if (needsReference(o.lossType) && !refRows) throw new Error(`loss "${o.lossType}" needs the reference log-probs`);
  const lp = completionLogProbs(policy, batch.sequences, training);
  const R = lp.counts.length;
  const B = R / 2;
  const half = (t: Tensor, first: boolean) => tf.slice(t, [first ? 0 : B], [B]);
  const counts = tf.tensor1d(lp.counts);
  const ref = refRows ? tf.tensor1d(refRows) : null;
  // logits/*: TRL's mean over every (token, vocabulary entry) of a side, i.e. the token-weighted mean of row means
  const meanLogit = (first: boolean) => tf.div(tf.sum(tf.mul(half(lp.meanLogits, first), half(counts, first))), tf.sum(half(counts, first)));
  let loss: tf.Scalar;
  if (batch.kind === 'pairs') {
    if (o.lossType === 'kto') throw new Error('dpoObjective: kto takes unpaired examples (a kto batch)');
    const out = pairLoss(o.lossType, {
      policyChosen: half(lp.sums, true), policyRejected: half(lp.sums, false), chosenTokens: half(counts, true), rejectedTokens: half(counts, false),
      ...(ref ? { refChosen: half(ref, true), refRejected: half(ref, false) } : {}),
    }, o);
    Object.assign(aux, rewardMetrics(out.chosenRewards, out.rejectedRewards), out.terms ?? {}, {
      'logps/chosen': tf.mean(half(lp.sums, true)), 'logps/rejected': tf.mean(half(lp.sums, false)),
      'logits/chosen': meanLogit(true), 'logits/rejected': meanLogit(false),
    });
    loss = out.loss;
  } else {
    if (o.lossType !== 'kto') throw new Error(`dpoObjective: loss "${o.lossType}" takes preference pairs, not kto examples`);
    const desirable = batch.items.map((e) => e.desirable);
    const out = ktoLoss({ policy: half(lp.sums, true), ref: half(ref!, true), desirable, policyKl: half(lp.sums, false), refKl: half(ref!, false) }, o, o.meanOverRanks);
    const sideMean = (want: boolean, t: Tensor) => {
      const idx = desirable.flatMap((d, i) => (d === want ? [i] : []));
      return idx.length ? tf.mean(tf.gather(t, tf.tensor1d(idx, 'int32'))) : null;
    };
    const policyRows = half(lp.sums, true);
    const m: Record<string, Tensor | null> = {
      'rewards/chosen': out.chosenRewards.size ? tf.mean(out.chosenRewards) : null,
      'rewards/rejected': out.rejectedRewards.size ? tf.mean(out.rejectedRewards) : null,
      'logps/chosen': sideMean(true, policyRows), 'logps/rejected': sideMean(false, policyRows), 'objective/kl': out.kl,
    };
    if (m['rewards/chosen'] && m['rewards/rejected']) m['rewards/margins'] = tf.sub(m['rewards/chosen'], m['rewards/rejected']);
    for (const [k, v] of Object.entries(m)) if (v) aux[k] = v;
    loss = out.loss;
  }
  return loss;
}
