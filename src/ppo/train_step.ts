/**
 * One PPO minibatch update, shared by the trainer and the benchmark: an actor step on the clipped policy loss (plus
 * the ptx LM loss when a ptx batch is given), then a critic step on the clipped value loss, each with its own AdamW.
 *
 * Legend: B batch, P prompt length (left-padded), N answer length (right-padded).
 */
import { tf } from '../engine/tf.js';
import type { Batch } from '../data/batching.js';
import type { DecoderModel } from '../models/decoder.js';
import type { ValueModel } from '../models/value_model.js';
import { positionsFromMask } from '../models/ops/positions.js';
import type { Optimization } from '../trainer/optimization.js';
import type { PpoConfig } from './config.js';
import { answerLogProbsAndEntropy, answerValues } from './experience.js';
import { maskedMean, policyLoss, valueLoss } from './functional.js';
import type { TrainBatch } from './replay_buffer.js';

export type PpoLossConfig = Pick<PpoConfig, 'clipEps' | 'valueClip' | 'ptxCoef' | 'ptxMix'>;

/**
 * Updates actor and critic on one minibatch; returns its metrics (loss/policy, policy/clipfrac, policy/approxkl,
 * policy/entropy, loss/value, value/clipfrac, loss/ptx with ptx, grad norms and learning rates). `onMemory` is called
 * where tensor memory peaks.
 */
export function ppoTrainStep(
  models: { actor: DecoderModel; critic: ValueModel },
  opt: { actor: Optimization; critic: Optimization },
  b: TrainBatch,
  ptx: Batch | null,
  c: PpoLossConfig,
  onMemory: () => void = () => {},
): Record<string, number> {
  const { actor, critic } = models;
  const P = b.promptLength;
  const N = b.answerLength;
  const t = tf.tidy(() => ({
    ids: tf.tensor2d(b.inputIds, undefined, 'int32'),
    mask: tf.tensor2d(b.attentionMask, undefined, 'int32'),
    answer: tf.tensor2d(b.answer, undefined, 'int32'),
    action: tf.tensor2d(b.actionMask, undefined, 'float32'),
    oldLogp: tf.tensor2d(b.logProbs),
    oldValues: tf.tensor2d(b.values),
    advantages: tf.tensor2d(b.advantages),
    returns: tf.tensor2d(b.returns),
  }));
  const p = ptx
    ? tf.tidy(() => ({
        ids: tf.tensor2d(ptx.inputIds, undefined, 'int32'),
        mask: tf.tensor2d(ptx.attentionMask, undefined, 'int32'),
        labels: tf.tensor2d(ptx.labels, undefined, 'int32'),
      }))
    : null;
  try {
    // 1. actor
    const a = opt.actor.backward((aux) => {
      const { logp, entropy } = answerLogProbsAndEntropy(actor, t.ids, t.mask, t.answer, P); // (B, N) each
      const pg = policyLoss(logp, t.oldLogp, t.advantages, t.action, c.clipEps);
      aux.policy = tf.clone(pg.loss); // a separate handle: backward() disposes the returned loss and each aux
      aux.clipfrac = pg.clipfrac;
      aux.approxkl = pg.approxkl;
      aux.entropy = maskedMean(entropy, t.action);
      let loss: tf.Scalar = pg.loss;
      if (p) {
        const { hidden } = actor.forward(p.ids, { attentionMask: p.mask, positionIds: positionsFromMask(p.mask) });
        const lm = actor.lmLoss(hidden, p.labels) as tf.Scalar;
        aux.ptx = lm;
        loss = c.ptxMix === 'convex' ? tf.add(tf.mul(pg.loss, 1 - c.ptxCoef), tf.mul(lm, c.ptxCoef)) : tf.add(pg.loss, tf.mul(lm, c.ptxCoef));
      }
      onMemory();
      return loss;
    });
    const aStep = opt.actor.step();
    // 2. critic
    const v = opt.critic.backward((aux) => {
      const values = answerValues(critic, t.ids, t.mask, P, N); // (B, N)
      const vl = valueLoss(values, t.oldValues, t.returns, t.action, c.valueClip);
      aux.clipfrac = vl.clipfrac;
      onMemory();
      return vl.loss;
    });
    const vStep = opt.critic.step();
    const out: Record<string, number> = {
      'loss/policy': a.aux.policy!, 'policy/clipfrac': a.aux.clipfrac!, 'policy/approxkl': a.aux.approxkl!, 'policy/entropy': a.aux.entropy!,
      'loss/value': v.loss, 'value/clipfrac': v.aux.clipfrac!,
      'train/actor_grad_norm': aStep.gradNorm, 'train/critic_grad_norm': vStep.gradNorm, 'train/actor_lr': aStep.lr, 'train/critic_lr': vStep.lr,
    };
    if (p) out['loss/ptx'] = a.aux.ptx!;
    return out;
  } finally {
    for (const x of Object.values(t)) x.dispose();
    if (p) for (const x of Object.values(p)) x.dispose();
  }
}
