/**
 * A reward model: any decoder of the zoo (the backbone, with its LoRA adapter if any) plus a value head (hidden → 1),
 * built on src/models/value_model.ts (which PPO's critic shares).
 *
 * The reward of a sequence is, by default, the value at its LAST REAL token: the index of the last 1 in the
 * attention mask. With right padding that is the EOS closing the answer, the one position whose causal context is
 * the whole prompt and answer (TRL and ColossalChat's later RewardModel read the same position); padding after it
 * cannot change it. `mean` (--reward_reduction mean) averages the values over the real tokens instead, `sum` adds
 * them; `answer_sum` / `answer_mean` add / average the answer's tokens only, so the prompt's positions (the same for
 * both answers of a pair) add no per-prompt offset: these need the answer's positions (`answerMask`).
 *
 * Legend: B batch, T time (padded length), C hidden width.
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import type { ValueHead } from '../models/value_head.js';
import { readsAnswerOnly, reduceValues, ValueModel } from '../models/value_model.js';
import type { RewardReduction } from './config.js';

/** The `rlhf.kind` a reward model's config.json carries (also `rlhf_config.json` beside a LoRA adapter). */
export const REWARD_MODEL_KIND = 'reward_model';

export interface RewardModelMeta {
  kind: typeof REWARD_MODEL_KIND;
  reward_reduction: RewardReduction;
  /** The prompt template the training pairs were rendered with. */
  prompt_template?: string;
  /** A legacy head's bias (transformers' score head has none), see src/models/pretrained.ts. */
  score_bias?: number;
}

/** Extra config.json fields that mark a saved directory as a reward model (in this project's `rlhf` field). */
export function rewardConfigExtra(reduction: RewardReduction, promptTemplate?: string): { rlhf: RewardModelMeta } {
  const rlhf: RewardModelMeta = { kind: REWARD_MODEL_KIND, reward_reduction: reduction };
  if (promptTemplate !== undefined) rlhf.prompt_template = promptTemplate;
  return { rlhf };
}

export class RewardModel {
  readonly valueModel: ValueModel;

  /**
   * @param padTokenId the id never scored (transformers' rule: the reward is read at the last token that is not
   * `pad_token_id`); a reward model is saved with this id as its `pad_token_id`.
   */
  constructor(
    backbone: DecoderModel,
    valueHead: ValueHead,
    readonly reduction: RewardReduction = 'last',
    padTokenId: number | null = backbone.config.padTokenId,
  ) {
    this.valueModel = new ValueModel(backbone, valueHead, true, padTokenId);
  }

  get padTokenId(): number | null {
    return this.valueModel.padTokenId;
  }

  get backbone(): DecoderModel {
    return this.valueModel.backbone;
  }

  get valueHead(): ValueHead {
    return this.valueModel.head;
  }

  /** Per-token values [B, T] of ids [B, T] with their 0/1 mask [B, T]. */
  values(inputIds: Tensor, attentionMask: Tensor, training = false): Tensor {
    return tf.tidy(() => this.valueModel.values(inputIds, attentionMask, training));
  }

  /**
   * One reward per sequence [B] (differentiable: the trainer calls it under the gradient tape). `answerMask` [B, T]:
   * 1 on the answer's tokens, needed by the answer-only reductions (ignored by the others).
   */
  score(inputIds: Tensor, attentionMask: Tensor, training = false, answerMask?: Tensor): Tensor {
    if (inputIds.rank !== 2 || attentionMask.shape.join() !== inputIds.shape.join()) {
      throw new Error(`RewardModel.score: ids [${inputIds.shape}] and attention mask [${attentionMask.shape}] must both be [B, T]`);
    }
    return tf.tidy(() =>
      reduceValues(this.valueModel.values(inputIds, attentionMask, training), attentionMask, this.reduction, inputIds, this.padTokenId, answerMask),
    );
  }

  /** Whether scoring needs the answer's positions (`answerMask`), i.e. the reduction reads the answer only. */
  get needsAnswerMask(): boolean {
    return readsAnswerOnly(this.reduction);
  }

  /** Rewards of plain arrays (evaluation, scoring generations), as numbers. */
  scoreArrays(inputIds: number[][], attentionMask: number[][], answerMask?: number[][]): number[] {
    const r = tf.tidy(() =>
      this.score(
        tf.tensor2d(inputIds, undefined, 'int32'), tf.tensor2d(attentionMask, undefined, 'int32'), false,
        answerMask && tf.tensor2d(answerMask, undefined, 'int32'),
      ),
    );
    const out = Array.from(r.dataSync());
    r.dispose();
    return out;
  }

  /** What training updates: the LoRA adapter (when there is one) or every backbone weight, plus the value head. */
  trainableParameters(): [string, tf.Variable][] {
    const head = this.valueHead.namedVariables();
    const lora = this.backbone.lora;
    if (lora && this.backbone.loraEnabled) {
      const adapter = [...lora.modules].flatMap(([mod, { A, B }]): [string, tf.Variable][] => [
        [`${mod}.lora_A.weight`, A],
        [`${mod}.lora_B.weight`, B],
      ]);
      return [...adapter, ...head];
    }
    return [...this.backbone.namedParameters(), ...head];
  }

  /** Restarts the dropout streams (backbone and adapter), so a resumed run draws the same masks. */
  setDropoutSeed(seed: number): void {
    this.backbone.setDropoutSeed(seed);
    this.backbone.lora?.setDropoutSeed(seed ^ 0x5bd1e995);
  }

  dispose(): void {
    this.backbone.dispose();
    this.valueHead.dispose();
  }
}

export { reduceValues };
