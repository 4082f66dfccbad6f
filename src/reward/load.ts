/**
 * Loading a saved reward model by its path alone (what PPO does with `--rm_pretrain`): a full HF directory
 * (value head in `value_head.safetensors` or as `value_head.*` inside model.safetensors, `rlhf` field in config.json)
 * or a LoRA-adapter directory (its base named by adapter_config.json, `value_head.safetensors` and `rlhf_config.json`
 * beside the adapter).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPretrained } from '../models/pretrained.js';
import { ValueHead } from '../models/value_head.js';
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

/** A RewardModel from a directory written by train_reward_model (or any HF dir with a value head). */
export function loadRewardModel(dir: string, opts: { reduction?: RewardReduction } = {}): RewardModel {
  const meta = readRewardMeta(dir);
  const loaded = loadPretrained(dir);
  if (!loaded.valueHead) {
    loaded.model.dispose();
    throw new Error(
      `${dir}: no value head (neither value_head.safetensors nor value_head.* tensors in model.safetensors), so it is not a ` +
        'reward model: pass the output directory of train_reward_model',
    );
  }
  let head: ValueHead;
  try {
    head = ValueHead.fromTensors(loaded.valueHead);
  } catch (e) {
    loaded.model.dispose();
    throw new Error(`${dir}: ${(e as Error).message}`);
  } finally {
    for (const t of loaded.valueHead.values()) t.dispose();
  }
  try {
    return new RewardModel(loaded.model, head, opts.reduction ?? meta?.reward_reduction ?? 'last');
  } catch (e) {
    loaded.model.dispose();
    head.dispose();
    throw new Error(`${dir}: ${(e as Error).message}`);
  }
}
