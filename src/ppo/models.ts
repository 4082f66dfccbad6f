/**
 * The four PPO models and how they share memory:
 *   actor    the SFT model, trained (its LoRA adapter only, with --lora_rank)
 *   initial  the frozen SFT model for the KL penalty: with LoRA, the actor's own base read with the adapter off
 *   critic   starts from the reward model (or --rm_pretrain), value head included, trained
 *   reward   the frozen reward model: with LoRA and the critic starting from it, the critic's base with the adapter off
 * A directory that holds a LoRA adapter (an SFT or RM run saved unmerged) is loaded through its base and the adapter
 * merged in, so PPO's own adapter sits on top of it.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { loadLoraAdapter, VALUE_HEAD_FILE } from '../models/pretrained.js';
import { ValueHead } from '../models/value_head.js';
import { ValueModel, type ValueReduction } from '../models/value_model.js';
import { readSafetensors } from '../hub/safetensors.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { refuseScoringModel } from '../hub/checkpoint_kind.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { packFrozenModel } from '../models/frozen_dtype.js';
import { isAdapterDir, loadMerged, newAdapter, readRank, trainableParams } from '../rollout/policy.js';
import { checkSameTokenizer, cloneHead, NOT_A_REWARD_MODEL, readRewardReduction } from '../rewards/reward_model.js';
import type { PpoConfig } from './config.js';

// Shared with GRPO (src/rollout, src/rewards); re-exported for PPO's users.
export { isAdapterDir, trainableParams } from '../rollout/policy.js';
export { withoutAdapter } from '../rollout/logprobs.js';
export { readRewardReduction } from '../rewards/reward_model.js';

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
    const ref = c.refPretrain ? await resolvePretrained(c.refPretrain) : null;
    if (ref) refuseScoringModel(ref, '--ref_pretrain', 'The reference model is a language model (the SFT model); the reward model goes to --rm_path.');
    const rm = await resolvePretrained(c.rmPath);
    const criticInit = c.rmPretrain ? await resolvePretrained(c.rmPretrain) : rm;
    const lora = c.loraRank > 0;
    const tokenizer = await Tokenizer.fromDir(c.tokenizer ?? pretrain);
    // --frozen_dtype: each frozen model (the initial and reward models; with LoRA the bases under the adapters) is
    // read packed, or packed as soon as it is loaded.
    const frozen = (m: DecoderModel): void => packFrozenModel(m, c.frozenDtype);
    if (c.frozenDtype !== 'float32' && lora && (isAdapterDir(pretrain) || isAdapterDir(criticInit))) {
      throw new Error(`--frozen_dtype ${c.frozenDtype} with --lora_rank: ${isAdapterDir(pretrain) ? pretrain : criticInit} is a LoRA adapter, so the final save would merge into the packed base; give its merged (full) model instead`);
    }

    // 1. actor and initial model
    // The SFT model is read packed when it is frozen: under LoRA (the actor's base), or as the initial model of a resume.
    // On a resume it is only the initial model: then --ref_pretrain's model when given (no LoRA: config checks it).
    const base = track(loadMerged(resumeDir && ref ? ref : pretrain, c.model, '--model', lora || resumeDir ? c.frozenDtype : 'float32').model);
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
      frozen(actor);
    } else if (resumeDir) {
      actor = track(loadMerged(resumeDir, c.model, '--model').model);
      initial = base;
      frozen(initial);
    } else {
      actor = base;
      initial = track(loadMerged(ref ?? pretrain, c.model, '--model', c.frozenDtype).model);
      frozen(initial);
    }
    if (ref && initial.config.vocabSize !== actor.config.vocabSize) {
      throw new Error(`--ref_pretrain ${ref}: its vocabulary has ${initial.config.vocabSize} tokens, the actor's (${pretrain}) ${actor.config.vocabSize}; the KL penalty compares the two token by token`);
    }

    // 2. reward model
    const rmLoaded = loadMerged(rm, c.rmModel, '--rm_model', c.frozenDtype);
    track(rmLoaded.model);
    frozen(rmLoaded.model);
    const rmHead = rmLoaded.valueHead;
    if (!rmHead) throw new Error(`${rm}: ${NOT_A_REWARD_MODEL}`);
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
      const own = shareCritic ? null : loadMerged(criticInit, c.rmModel, '--rm_model', c.frozenDtype);
      const backbone = own ? track(own.model) : rmLoaded.model;
      const ownHead = own ? own.valueHead : null;
      if (ownHead) track(ownHead);
      backbone.lora = criticAdapterDir ? loadLoraAdapter(criticAdapterDir, backbone) : newAdapter(backbone, c, c.seed + 1);
      frozen(backbone);
      const head = criticAdapterDir
        ? headFromFile(criticAdapterDir)
        : shareCritic ? cloneHead(rmHead) : ownHead ? cloneHead(ownHead) : ValueHead.create(backbone.config.wordEmbedDim, c.seed + 1);
      critic = new ValueModel(backbone, track(head), true);
      reward = new ValueModel(rmLoaded.model, rmHead, false);
    } else {
      const from = criticDir ?? criticInit;
      const loaded = loadMerged(from, c.rmModel, '--rm_model');
      track(loaded.model);
      const head = loaded.valueHead ?? (criticDir ? null : resolve(criticInit) === resolve(rm) ? cloneHead(rmHead) : ValueHead.create(loaded.model.config.wordEmbedDim, c.seed + 1));
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

function headFromFile(dir: string): ValueHead {
  const file = join(dir, VALUE_HEAD_FILE);
  if (!existsSync(file)) throw new Error(`${dir}: ${VALUE_HEAD_FILE} is missing (the critic's value head)`);
  const tensors = new Map([...readSafetensors(file).tensors].map(([k, t]) => [k, tf.tensor(t.data, t.shape, 'float32')]));
  try {
    return ValueHead.fromTensors(tensors);
  } catch (e) {
    throw new Error(`${dir}: ${(e as Error).message}`);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

export function criticParams(critic: ValueModel): [string, tf.Variable][] {
  return [...trainableParams(critic.backbone), ...critic.head.namedVariables()];
}
