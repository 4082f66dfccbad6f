/**
 * Loading the policy of an online-RL stage (PPO's actor, GRPO's policy) and naming what it trains. A directory that
 * holds a LoRA adapter (an SFT run saved unmerged) is loaded through its base with the adapter merged in, so the
 * stage's own adapter sits on top of it; with a LoRA rank the reference is the same object read with the adapter off.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { tf } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { loadPretrained, type LoadedModel } from '../models/pretrained.js';
import { packFrozenModel, type FrozenDtype } from '../models/frozen_dtype.js';

/** Whether `dir` holds only a PEFT adapter (no config.json of its own). */
export function isAdapterDir(dir: string): boolean {
  return !existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'adapter_config.json'));
}

/** Folds a loaded adapter into the base weights and drops it. */
export function mergeAdapter(model: DecoderModel): void {
  if (!model.lora) return;
  model.lora.mergeInto(model.params, model.spec);
  model.lora.dispose();
  model.lora = null;
}

/**
 * Loads `dir` with any adapter merged in; `family` (from --model) must match its model_type. `frozenDtype`: a frozen
 * model, its weight matrices read straight into that packed format (packed after the merge when `dir` is an adapter).
 */
export function loadMerged(dir: string, family: string | undefined, flag: string, frozenDtype: FrozenDtype = 'float32'): LoadedModel {
  const loaded = loadPretrained(dir, { frozenDtype });
  mergeAdapter(loaded.model);
  packFrozenModel(loaded.model, frozenDtype);
  if (family && family !== loaded.model.config.modelType) {
    loaded.model.dispose();
    throw new Error(`${flag} ${family} but ${dir} holds a ${loaded.model.config.modelType} model`);
  }
  return loaded;
}

export interface LoraFlags {
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  loraTarget?: string[] | string;
}

/** A fresh adapter with the stage's LoRA flags (targets default per model family). */
export function newAdapter(model: DecoderModel, c: LoraFlags, seed: number): LoraAdapter {
  const targets = c.loraTarget ?? DEFAULT_LORA_TARGETS[model.config.modelType] ?? 'all-linear';
  return LoraAdapter.create(model.spec, { r: c.loraRank, alpha: c.loraAlpha, dropout: c.loraDropout, targetModules: targets }, seed);
}

/** The LoRA rank an adapter directory was saved with ('?' when unreadable), for error messages. */
export function readRank(dir: string): number | string {
  try {
    return (JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as { r?: number }).r ?? '?';
  } catch {
    return '?';
  }
}

/** The trainable parameters under stable names: the adapter's (PEFT names) with LoRA, else every weight. */
export function trainableParams(model: DecoderModel): [string, tf.Variable][] {
  if (model.lora) {
    return [...model.lora.modules].flatMap(([mod, { A, B }]) => [
      [`${mod}.lora_A.weight`, A] as [string, tf.Variable],
      [`${mod}.lora_B.weight`, B] as [string, tf.Variable],
    ]);
  }
  return model.namedParameters();
}
