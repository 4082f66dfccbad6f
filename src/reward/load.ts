/**
 * Loading a saved reward model by its path alone (`loadRewardModel`), whichever layout it was saved in, and the
 * `rlhf` metadata (reward reduction) it carries.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPretrained } from '../models/pretrained.js';
import { REWARD_REDUCTIONS, type RewardReduction } from './config.js';
import { RewardModel, type RewardModelMeta } from './model.js';

/** File beside a LoRA adapter that carries the config.json extras (saveCheckpoint writes it). */
export const RLHF_CONFIG_FILE = 'rlhf_config.json';

/** The `rlhf` metadata of a saved model directory, or null when it has none. */
export function readRewardMeta(dir: string): Partial<RewardModelMeta> | null {
  const candidates = [join(dir, 'config.json'), join(dir, RLHF_CONFIG_FILE)];
  for (const file of candidates) {
    if (!existsSync(file)) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
    }
    const rlhf = (parsed as { rlhf?: unknown }).rlhf;
    if (rlhf === undefined) continue;
    if (typeof rlhf !== 'object' || rlhf === null) throw new Error(`${file}: field "rlhf" must be an object`);
    const reduction = (rlhf as { reward_reduction?: unknown }).reward_reduction;
    if (reduction !== undefined && !(REWARD_REDUCTIONS as readonly unknown[]).includes(reduction)) {
      throw new Error(`${file}: field "rlhf.reward_reduction" must be one of ${REWARD_REDUCTIONS.join(', ')}, got ${JSON.stringify(reduction)}`);
    }
    return rlhf as Partial<RewardModelMeta>;
  }
  return null;
}

/**
 * THE reward-model loader: a RewardModel from a directory, in either layout:
 * - transformers' `<Family>ForSequenceClassification` (`score.weight`, `num_labels` 1): what train_reward_model
 *   writes, TRL's RewardTrainer writes, and hub reward models are;
 * - the older layout of this project (`value_head.weight`/`value_head.bias` in model.safetensors or
 *   value_head.safetensors), or a PEFT LoRA adapter directory (its base named by adapter_config.json, the head in
 *   value_head.safetensors and `rlhf_config.json` beside it; the adapter stays applied).
 * The reward is read as transformers reads it (the last token that is not `pad_token_id`), or as the directory's
 * `rlhf.reward_reduction` says (`mean`, `sum`, `answer_sum`, `answer_mean`); `opts.reduction` overrides that.
 * The caller owns the model (`dispose()`).
 */
export function loadRewardModel(dir: string, opts: { reduction?: RewardReduction } = {}): RewardModel {
  const meta = readRewardMeta(dir);
  const loaded = loadPretrained(dir);
  const head = loaded.valueHead;
  if (!head) {
    loaded.model.dispose();
    throw new Error(
      `${dir}: no value head (no score.weight of a ForSequenceClassification checkpoint, no value_head.* tensors), so it is ` +
        'not a reward model: pass the output directory of train_reward_model or a hub reward model',
    );
  }
  try {
    return new RewardModel(loaded.model, head, opts.reduction ?? meta?.reward_reduction ?? 'last', loaded.model.config.padTokenId);
  } catch (e) {
    loaded.model.dispose();
    head.dispose();
    throw new Error(`${dir}: ${(e as Error).message}`);
  }
}
