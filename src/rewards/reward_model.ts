/**
 * Reward models as a reward source: a directory written by train_reward_model (value head in value_head.safetensors
 * or as value_head.* inside model.safetensors, `rlhf.reward_reduction` in config.json or rlhf_config.json), or a
 * LoRA adapter over such a model (merged on load). PPO loads its reward model through these helpers; GRPO and
 * `evaluate` score completions with `RewardModelScorer`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../engine/tf.js';
import { ValueHead } from '../models/value_head.js';
import { ValueModel, reduceValues, VALUE_REDUCTIONS, type ValueReduction } from '../models/value_model.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { loadMerged } from '../rollout/policy.js';
import type { FrozenDtype } from '../models/frozen_dtype.js';

export function cloneHead(h: ValueHead): ValueHead {
  return h.clone();
}

/** `rlhf.reward_reduction` of a reward-model directory (config.json, or rlhf_config.json beside an adapter). */
export function readRewardReduction(dir: string): ValueReduction {
  for (const file of [join(dir, 'config.json'), join(dir, 'rlhf_config.json')]) {
    if (!existsSync(file)) continue;
    const rlhf = (JSON.parse(readFileSync(file, 'utf8')) as { rlhf?: { reward_reduction?: unknown } }).rlhf;
    const r = rlhf?.reward_reduction;
    if (r === undefined) continue;
    if (!(VALUE_REDUCTIONS as readonly unknown[]).includes(r)) {
      throw new Error(`${file}: rlhf.reward_reduction must be one of ${VALUE_REDUCTIONS.join(', ')}, got ${JSON.stringify(r)}`);
    }
    return r as ValueReduction;
  }
  return 'last';
}

/** A clear error when two tokenizers would give different ids (the RM must read the policy's tokens). */
export async function checkSameTokenizer(actorTok: Tokenizer, rmDir: string, rmVocab: number): Promise<void> {
  if (actorTok.vocabSize > rmVocab) {
    throw new Error(`the tokenizer has ${actorTok.vocabSize} tokens but the reward model ${rmDir} embeds only ${rmVocab}: actor and reward model must share a tokenizer`);
  }
  if (!existsSync(join(rmDir, 'tokenizer.json'))) return;
  const rmTok = await Tokenizer.fromDir(rmDir);
  const probe = 'Hello world! The reward model reads these ids. 你好';
  if (actorTok.encode(probe).join() !== rmTok.encode(probe).join()) {
    throw new Error(`${rmDir}: its tokenizer encodes text differently from the actor's: actor and reward model must share a tokenizer`);
  }
}

export const NOT_A_REWARD_MODEL = 'no value head (no score.weight of a ForSequenceClassification checkpoint, no value_head.* tensors), so it is not a reward model: pass a reward model (e.g. the output directory of train_reward_model) as --rm_path';

/** A frozen reward model that scores token rows (prompt + completion) of the policy's tokenizer. */
export class RewardModelScorer {
  private constructor(
    readonly dir: string,
    readonly model: ValueModel,
    readonly reduction: ValueReduction,
  ) {}

  static async load(dir: string, policyTokenizer: Tokenizer, frozenDtype: FrozenDtype = 'float32'): Promise<RewardModelScorer> {
    const loaded = loadMerged(dir, undefined, '--rm_path', frozenDtype);
    try {
      const head = loaded.valueHead;
      if (!head) throw new Error(`${dir}: ${NOT_A_REWARD_MODEL}`);
      await checkSameTokenizer(policyTokenizer, dir, loaded.model.config.vocabSize);
      // transformers' rule: the reward is read at the last token that is not the pad id.
      return new RewardModelScorer(dir, new ValueModel(loaded.model, head, false, loaded.model.config.padTokenId), readRewardReduction(dir));
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  }

  /**
   * One score per row of ids [B, T] with its 0/1 mask (any padding side); `answerMask` [B, T] (1 on the completion's
   * tokens) is what the answer-only reductions read.
   */
  score(ids: number[][], mask: number[][], answerMask?: number[][]): number[] {
    return tf.tidy(() => {
      const i = tf.tensor2d(ids, undefined, 'int32');
      const m = tf.tensor2d(mask, undefined, 'int32');
      const a = answerMask && tf.tensor2d(answerMask, undefined, 'int32');
      return Array.from(reduceValues(this.model.values(i, m), m, this.reduction, i, this.model.padTokenId, a).dataSync());
    });
  }

  dispose(): void {
    this.model.backbone.dispose();
    this.model.head.dispose();
  }
}
