/**
 * Preference-optimization losses, as TRL 1.x computes them (DPOTrainer, CPOTrainer for SimPO, ORPOTrainer,
 * KTOTrainer). Pure functions of per-sequence log-probs; each returns the scalar loss (mean over the batch) and
 * the implicit rewards TRL logs.
 *
 * Inputs per pair i: π_c, π_r = Σ log π(y | x) of the chosen and rejected completions (sums over their tokens),
 * n_c, n_r = their token counts, and the reference's ρ_c, ρ_r for the losses that have a reference. With
 * h = (π_c − ρ_c) − (π_r − ρ_r), σ the logistic function and log σ(x) = −softplus(−x) (stable for any x):
 *   sigmoid   −(1−ε)·log σ(βh) − ε·log σ(−βh)                  (ε = --label_smoothing: cDPO; 0: DPO)
 *   robust    (−(1−ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)
 *   hinge     max(0, 1 − βh)
 *   ipo       (h̄ − 1/(2β))², h̄ from per-token-averaged log-probs (π/n, ρ/n)
 *   simpo     −(1−ε)·log σ(β(π̄_c − π̄_r − γ/β)) − ε·log σ(−β(…)), π̄ = π/n, no reference
 *   orpo      −Σπ_c/Σn_c − λ·mean log σ(log odds(π̄_c) − log odds(π̄_r)), odds(p) = p/(1−p), no reference
 *   kto       see ktoLoss (unpaired examples)
 * Rewards: β·(π − ρ) for sigmoid/robust/hinge, β·(π̄ − ρ̄) for ipo, β·π̄ for simpo, λ·π̄ for orpo.
 */
import { tf, type Tensor } from '../engine/tf.js';

export const DPO_LOSS_TYPES = ['sigmoid', 'ipo', 'hinge', 'robust', 'simpo', 'orpo', 'kto'] as const;
export type DpoLossType = (typeof DPO_LOSS_TYPES)[number];

/** Losses that compare against no reference model (none is loaded for them). */
export const REFERENCE_FREE_LOSSES: readonly DpoLossType[] = ['simpo', 'orpo'];

export function needsReference(loss: DpoLossType): boolean {
  return !REFERENCE_FREE_LOSSES.includes(loss);
}

export interface DpoLossParams {
  /** β: the strength of the KL regularisation (DPO/IPO/KTO), SimPO's reward scale. */
  beta: number;
  /** ε: the share of labels assumed flipped (cDPO, robust DPO, SimPO). */
  labelSmoothing: number;
  /** SimPO's target margin γ. */
  simpoGamma: number;
  /** ORPO's λ, the weight of the odds-ratio term. */
  orpoLambda: number;
  /** KTO's weights of desirable and undesirable examples. */
  desirableWeight: number;
  undesirableWeight: number;
}

export const DPO_LOSS_DEFAULTS: DpoLossParams = { beta: 0.1, labelSmoothing: 0, simpoGamma: 0.5, orpoLambda: 0.1, desirableWeight: 1, undesirableWeight: 1 };

/** Log-probs of B pairs, each [B]; the reference's only for losses that use one. */
export interface PairLogps {
  policyChosen: Tensor;
  policyRejected: Tensor;
  /** Completion token counts (float32). */
  chosenTokens: Tensor;
  rejectedTokens: Tensor;
  refChosen?: Tensor;
  refRejected?: Tensor;
}

export interface PairLossOutput {
  loss: tf.Scalar;
  /** [B] implicit rewards (no gradient flows into the metrics computed from them). */
  chosenRewards: Tensor;
  rejectedRewards: Tensor;
  /** Named parts of the loss worth logging (orpo: loss/nll and loss/log_odds_ratio, TRL's nll_loss and log_odds_ratio). */
  terms?: Record<string, tf.Scalar>;
}

const logSigmoid = (x: Tensor): Tensor => tf.neg(tf.softplus(tf.neg(x)));

function reference(type: DpoLossType, lp: PairLogps): { c: Tensor; r: Tensor } {
  if (!lp.refChosen || !lp.refRejected) throw new Error(`loss "${type}" needs the reference model's log-probs`);
  return { c: lp.refChosen, r: lp.refRejected };
}

/** log(p / (1 − p)) of p = exp(logp), logp < 0. */
function logOdds(logp: Tensor): Tensor {
  return tf.sub(logp, tf.log1p(tf.neg(tf.exp(logp))));
}

/** The pairwise loss named by `type` on B pairs (see the file comment for each formula). */
export function pairLoss(type: Exclude<DpoLossType, 'kto'>, lp: PairLogps, p: DpoLossParams): PairLossOutput {
  return tf.tidy(() => {
    const { beta, labelSmoothing: eps } = p;
    const smoothed = (x: Tensor) => tf.sub(tf.mul(logSigmoid(x), -(1 - eps)), tf.mul(logSigmoid(tf.neg(x)), eps));
    const avgC = tf.div(lp.policyChosen, lp.chosenTokens);
    const avgR = tf.div(lp.policyRejected, lp.rejectedTokens);
    let losses: Tensor;
    let chosenRewards: Tensor;
    let rejectedRewards: Tensor;
    switch (type) {
      case 'sigmoid': // DPO, Rafailov et al. 2023 (arXiv 2305.18290); cDPO with ε > 0 (Mitchell 2023)
      case 'robust': // Robust DPO, Chowdhury et al. 2024 (arXiv 2403.00409)
      case 'hinge': { // RSO's hinge loss, Liu et al. 2023 (arXiv 2309.06657)
        const ref = reference(type, lp);
        const c = tf.sub(lp.policyChosen, ref.c);
        const r = tf.sub(lp.policyRejected, ref.r);
        const bh = tf.mul(tf.sub(c, r), beta);
        if (type === 'sigmoid') losses = smoothed(bh);
        else if (type === 'robust') losses = tf.div(tf.add(tf.mul(logSigmoid(bh), -(1 - eps)), tf.mul(logSigmoid(tf.neg(bh)), eps)), 1 - 2 * eps);
        else losses = tf.relu(tf.sub(1, bh));
        chosenRewards = tf.mul(c, beta);
        rejectedRewards = tf.mul(r, beta);
        break;
      }
      case 'ipo': { // IPO, Azar et al. 2023 (arXiv 2310.12036), on per-token-averaged log-probs as TRL
        const ref = reference(type, lp);
        const c = tf.sub(avgC, tf.div(ref.c, lp.chosenTokens));
        const r = tf.sub(avgR, tf.div(ref.r, lp.rejectedTokens));
        losses = tf.square(tf.sub(tf.sub(c, r), 1 / (2 * beta)));
        chosenRewards = tf.mul(c, beta);
        rejectedRewards = tf.mul(r, beta);
        break;
      }
      case 'simpo': { // SimPO, Meng et al. 2024 (arXiv 2405.14734): length-averaged, reference-free, margin γ
        losses = smoothed(tf.mul(tf.sub(tf.sub(avgC, avgR), p.simpoGamma / beta), beta));
        chosenRewards = tf.mul(avgC, beta);
        rejectedRewards = tf.mul(avgR, beta);
        break;
      }
      case 'orpo': { // ORPO, Hong et al. 2024 (arXiv 2403.07691): chosen NLL (token mean) + λ·odds-ratio term
        const nll = tf.neg(tf.div(tf.sum(lp.policyChosen), tf.sum(lp.chosenTokens)));
        const ratio = logSigmoid(tf.sub(logOdds(avgC), logOdds(avgR)));
        const meanRatio = tf.mean(ratio) as tf.Scalar;
        const loss = tf.sub(nll, tf.mul(meanRatio, p.orpoLambda));
        return {
          loss: loss as tf.Scalar, chosenRewards: tf.mul(avgC, p.orpoLambda), rejectedRewards: tf.mul(avgR, p.orpoLambda),
          terms: { 'loss/nll': nll as tf.Scalar, 'loss/log_odds_ratio': meanRatio },
        };
      }
      default:
        throw new Error(`unknown loss_type "${String(type)}" (choose one of: ${DPO_LOSS_TYPES.join(', ')})`);
    }
    return { loss: tf.mean(losses) as tf.Scalar, chosenRewards, rejectedRewards };
  });
}

/** Unpaired examples for KTO: each [M] with a desirable (true) / undesirable (false) label per example. */
export interface KtoLogps {
  policy: Tensor;
  ref: Tensor;
  desirable: readonly boolean[];
  /** [M] log-probs of mismatched (prompt, completion) pairs under the policy and the reference: the KL estimate. */
  policyKl: Tensor;
  refKl: Tensor;
}

export interface KtoLossOutput extends PairLossOutput {
  /** The KL estimate z₀ = max(0, mean(π_KL − ρ_KL)) (no gradient). */
  kl: tf.Scalar;
}

/**
 * KTO, Ethayarajh et al. 2024 (arXiv 2402.01306), eq. 7 as TRL's KTOTrainer computes it:
 *   z₀ = max(0, mean(π(y'|x) − ρ(y'|x))) over mismatched pairs (x, y'), detached
 *   desirable:   w_d·(1 − σ(β(π − ρ − z₀)));  undesirable: w_u·(1 − σ(β(z₀ − (π − ρ))))
 * and the loss is the mean over all M examples; rewards β(π − ρ) per side (either may be empty). Under ddp/zero2
 * `meanOverRanks` averages z₀'s batch means over the ranks first.
 */
export function ktoLoss(lp: KtoLogps, p: DpoLossParams, meanOverRanks: (x: number) => number = (x) => x): KtoLossOutput {
  const M = lp.desirable.length;
  if (lp.policy.shape[0] !== M || lp.ref.shape[0] !== M) throw new Error(`ktoLoss: ${M} labels for log-probs [${lp.policy.shape}] and [${lp.ref.shape}]`);
  return tf.tidy(() => {
    // read back: detached; averaged over the ranks before the clamp, as TRL gathers it across processes
    const kl = Math.max(0, meanOverRanks(tf.mean(tf.sub(lp.policyKl, lp.refKl)).dataSync()[0]!));
    const ratio = tf.sub(lp.policy, lp.ref);
    const sign = tf.tensor1d(lp.desirable.map((d) => (d ? 1 : -1)));
    const weight = tf.tensor1d(lp.desirable.map((d) => (d ? p.desirableWeight : p.undesirableWeight)));
    // desirable: β(ratio − z₀); undesirable: β(z₀ − ratio) = the same with the sign flipped
    const losses = tf.mul(weight, tf.sub(1, tf.sigmoid(tf.mul(tf.mul(sign, tf.sub(ratio, kl)), p.beta))));
    const rewards = tf.mul(ratio, p.beta);
    const pick = (want: boolean) => {
      const idx = lp.desirable.flatMap((d, i) => (d === want ? [i] : []));
      return idx.length ? tf.gather(rewards, tf.tensor1d(idx, 'int32')) : tf.zeros([0]);
    };
    return { loss: tf.mean(losses) as tf.Scalar, chosenRewards: pick(true), rejectedRewards: pick(false), kl: tf.scalar(kl) };
  });
}

/** TRL's reward metrics of a batch: mean rewards, accuracy (strictly chosen > rejected), mean margin. */
export function rewardMetrics(chosen: Tensor, rejected: Tensor): Record<'rewards/chosen' | 'rewards/rejected' | 'rewards/accuracies' | 'rewards/margins', tf.Scalar> {
  return tf.tidy(() => ({
    'rewards/chosen': tf.mean(chosen) as tf.Scalar,
    'rewards/rejected': tf.mean(rejected) as tf.Scalar,
    'rewards/accuracies': tf.mean(tf.cast(tf.greater(chosen, rejected), 'float32')) as tf.Scalar,
    'rewards/margins': tf.mean(tf.sub(chosen, rejected)) as tf.Scalar,
  }));
}
