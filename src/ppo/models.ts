/**
 * The four PPO models and how they share memory:
 *   actor    the SFT model, trained (its LoRA adapter only, with --lora_rank)
 *   initial  the frozen SFT model for the KL penalty: with LoRA, the actor's own base read with the adapter off
 *   critic   starts from the reward model (or --rm_pretrain), value head included, trained
 *   reward   the frozen reward model: with LoRA and the critic starting from it, the critic's base with the adapter off
 * A directory that holds a LoRA adapter (an SFT or RM run saved unmerged) is loaded through its base and the adapter
 * merged in, so PPO's own adapter sits on top of it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { loadLoraAdapter, loadPretrained, VALUE_HEAD_FILE, type LoadedModel } from '../models/pretrained.js';
import { ValueHead } from '../models/value_head.js';
import { ValueModel, type ValueReduction } from '../models/value_model.js';
import { readSafetensors } from '../hub/safetensors.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { refuseScoringModel } from '../hub/checkpoint_kind.js';
import { Tokenizer } from '../hub/tokenizer.js';
import type { PpoConfig } from './config.js';

export const CRITIC_SUBDIR = 'critic';

export interface PpoModels {
  tokenizer: Tokenizer;
  actor: DecoderModel;
  /** The reference model; the same object as `actor` when they share a base (read it with the adapter off). */
  initial: DecoderModel;
  critic: ValueModel;
  reward: ValueModel;
  rewardReduction: ValueReduction;
  /** Resolved directories, recorded in checkpoints. */
  dirs: { pretrain: string; rm: string; criticInit: string };
  /** The SFT directory held a LoRA adapter (merged on load): PPO's actor adapter cannot name it as its base. */
  pretrainIsAdapter: boolean;
  criticInitIsAdapter: boolean;
  dispose(): void;
}

/** Whether `dir` holds only a PEFT adapter (no config.json of its own). */
export function isAdapterDir(dir: string): boolean {
  return !existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'adapter_config.json'));
}

/** Folds a loaded adapter into the base weights and drops it. */
function mergeAdapter(model: DecoderModel): void {
  if (!model.lora) return;
  model.lora.mergeInto(model.params, model.spec);
  model.lora.dispose();
  model.lora = null;
}

function loadMerged(dir: string, family: string | undefined, flag: string): LoadedModel {
  const loaded = loadPretrained(dir);
  mergeAdapter(loaded.model);
  if (family && family !== loaded.model.config.modelType) {
    loaded.model.dispose();
    throw new Error(`${flag} ${family} but ${dir} holds a ${loaded.model.config.modelType} model`);
  }
  return loaded;
}

function newAdapter(model: DecoderModel, c: PpoConfig, seed: number): LoraAdapter {
  const targets = c.loraTarget ?? DEFAULT_LORA_TARGETS[model.config.modelType] ?? 'all-linear';
  return LoraAdapter.create(model.spec, { r: c.loraRank, alpha: c.loraAlpha, dropout: c.loraDropout, targetModules: targets }, seed);
}

function headFromMap(tensors: Map<string, tf.Tensor>, dir: string): ValueHead {
  try {
    return ValueHead.fromTensors(tensors);
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

function cloneHead(h: ValueHead): ValueHead {
  return h.clone();
}

/** `rlhf.reward_reduction` of a reward-model directory (config.json, or rlhf_config.json beside an adapter). */
export function readRewardReduction(dir: string): ValueReduction {
  for (const file of [join(dir, 'config.json'), join(dir, 'rlhf_config.json')]) {
    if (!existsSync(file)) continue;
    const rlhf = (JSON.parse(readFileSync(file, 'utf8')) as { rlhf?: { reward_reduction?: unknown } }).rlhf;
    const r = rlhf?.reward_reduction;
    if (r === undefined) continue;
    if (r !== 'last' && r !== 'mean') throw new Error(`${file}: rlhf.reward_reduction must be "last" or "mean", got ${JSON.stringify(r)}`);
    return r;
  }
  return 'last';
}

/** A clear error when two tokenizers would give different ids (the RM must read the actor's tokens). */
async function checkSameTokenizer(actorTok: Tokenizer, rmDir: string, rmVocab: number): Promise<void> {
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

/** Loads the four models (from their directories, or the actor and critic from a checkpoint when resuming). */
export async function loadPpoModels(c: PpoConfig, resumeDir?: string): Promise<PpoModels> {
  const owned: { dispose(): void }[] = [];
  const track = <T extends { dispose(): void }>(x: T): T => {
    owned.push(x);
    return x;
  };
  try {
    const pretrain = await resolvePretrained(c.pretrain);
    refuseScoringModel(pretrain, '--pretrain', 'The actor and the initial model start from the SFT model (train_sft output); the reward model goes to --rm_path.');
    const rm = await resolvePretrained(c.rmPath);
    const criticInit = c.rmPretrain ? await resolvePretrained(c.rmPretrain) : rm;
    const lora = c.loraRank > 0;
    const tokenizer = await Tokenizer.fromDir(c.tokenizer ?? pretrain);

    // 1. actor and initial model
    const base = track(loadMerged(pretrain, c.model, '--model').model);
    let actor: DecoderModel;
    let initial: DecoderModel;
    const actorAdapterDir = resumeDir && isAdapterDir(resumeDir) ? resumeDir : null;
    if (resumeDir && !lora && actorAdapterDir) throw new Error(`${resumeDir} holds a LoRA adapter: resume with the same --lora_rank (${readRank(resumeDir)})`);
    if (lora) {
      if (resumeDir && !actorAdapterDir) {
        throw new Error(`${resumeDir} holds full (merged) weights, so the LoRA adapter cannot be separated from its base: resume from a checkpoint-<episode> directory (saved unmerged) or without --lora_rank`);
      }
      actor = base;
      actor.lora = actorAdapterDir ? loadLoraAdapter(actorAdapterDir, actor) : newAdapter(actor, c, c.seed);
      initial = actor;
    } else if (resumeDir) {
      actor = track(loadMerged(resumeDir, c.model, '--model').model);
      initial = base;
    } else {
      actor = base;
      initial = track(loadMerged(pretrain, c.model, '--model').model);
    }

    // 2. reward model
    const rmLoaded = loadMerged(rm, c.rmModel, '--rm_model');
    track(rmLoaded.model);
    const rmHead = rmLoaded.valueHead;
    if (!rmHead) throw new Error(`${rm}: no value head (no score.weight of a ForSequenceClassification checkpoint, no value_head.* tensors), so it is not a reward model: pass a reward model (e.g. the output directory of train_reward_model) as --rm_path`);
    track(rmHead);
    const rewardReduction = readRewardReduction(rm);
    await checkSameTokenizer(tokenizer, rm, rmLoaded.model.config.vocabSize);

    // 3. critic
    const criticDir = resumeDir ? join(resumeDir, CRITIC_SUBDIR) : null;
    if (criticDir && !existsSync(criticDir)) throw new Error(`${resumeDir}: no ${CRITIC_SUBDIR}/ directory, so it is not a checkpoint written by train_prompts`);
    const criticAdapterDir = criticDir && isAdapterDir(criticDir) ? criticDir : null;
    const shareCritic = lora && resolve(criticInit) === resolve(rm);
    let critic: ValueModel;
    let reward: ValueModel;
    if (lora) {
      if (criticDir && !criticAdapterDir) throw new Error(`${criticDir} holds full (merged) weights: resume from a checkpoint-<episode> directory (saved unmerged) or without --lora_rank`);
      const own = shareCritic ? null : loadMerged(criticInit, c.rmModel, '--rm_model');
      const backbone = own ? track(own.model) : rmLoaded.model;
      const ownHead = own ? own.valueHead : null;
      if (ownHead) track(ownHead);
      backbone.lora = criticAdapterDir ? loadLoraAdapter(criticAdapterDir, backbone) : newAdapter(backbone, c, c.seed + 1);
      const head = criticAdapterDir
        ? headFromFile(criticAdapterDir)
        : shareCritic ? cloneHead(rmHead) : ownHead ? cloneHead(ownHead) : ValueHead.create(backbone.config.hiddenSize, c.seed + 1);
      critic = new ValueModel(backbone, track(head), true);
      reward = new ValueModel(rmLoaded.model, rmHead, false);
    } else {
      const from = criticDir ?? criticInit;
      const loaded = loadMerged(from, c.rmModel, '--rm_model');
      track(loaded.model);
      const head = loaded.valueHead ?? (criticDir ? null : resolve(criticInit) === resolve(rm) ? cloneHead(rmHead) : ValueHead.create(loaded.model.config.hiddenSize, c.seed + 1));
      if (!head) throw new Error(`${from}: the critic checkpoint has no value head`);
      critic = new ValueModel(loaded.model, track(head), true);
      reward = new ValueModel(rmLoaded.model, rmHead, true);
    }

    const pretrainIsAdapter = isAdapterDir(pretrain);
    const criticInitIsAdapter = isAdapterDir(criticInit);
    return {
      tokenizer, actor, initial, critic, reward, rewardReduction,
      dirs: { pretrain, rm, criticInit }, pretrainIsAdapter, criticInitIsAdapter,
      dispose() {
        for (const o of owned) o.dispose();
      },
    };
  } catch (e) {
    for (const o of owned) o.dispose();
    throw e;
  }
}

function readRank(dir: string): number | string {
  try {
    return (JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as { r?: number }).r ?? '?';
  } catch {
    return '?';
  }
}

function headFromFile(dir: string): ValueHead {
  const file = join(dir, VALUE_HEAD_FILE);
  if (!existsSync(file)) throw new Error(`${dir}: ${VALUE_HEAD_FILE} is missing (the critic's value head)`);
  const tensors = new Map([...readSafetensors(file).tensors].map(([k, t]) => [k, tf.tensor(t.data, t.shape, 'float32')]));
  return headFromMap(tensors, dir);
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

export function criticParams(critic: ValueModel): [string, tf.Variable][] {
  return [...trainableParams(critic.backbone), ...critic.head.namedVariables()];
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
