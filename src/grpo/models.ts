/**
 * GRPO's models: the policy (trained; its LoRA adapter only, with --lora_rank) and, when beta > 0, the frozen
 * reference: with LoRA the policy's own base read with the adapter off, else a second copy of --pretrain. With
 * beta 0 no reference is loaded at all.
 */
import type { DecoderModel } from '../models/decoder.js';
import { loadLoraAdapter } from '../models/pretrained.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { isAdapterDir, loadMerged, newAdapter, readRank } from '../rollout/policy.js';
import { needsReference, type GrpoConfig } from './config.js';
import { packFrozenModel } from '../models/frozen_dtype.js';

export interface GrpoModels {
  tokenizer: Tokenizer;
  policy: DecoderModel;
  /** null with beta 0; the policy object itself under LoRA (read it with the adapter off). */
  reference: DecoderModel | null;
  pretrainDir: string;
  pretrainIsAdapter: boolean;
  dispose(): void;
}

export async function loadGrpoModels(c: GrpoConfig, resumeDir?: string): Promise<GrpoModels> {
  const owned: { dispose(): void }[] = [];
  try {
    const pretrain = await resolvePretrained(c.pretrain);
    const tokenizer = await Tokenizer.fromDir(c.tokenizer ?? pretrain);
    const lora = c.loraRank > 0;
    const withRef = needsReference(c);
    const resumeAdapter = resumeDir && isAdapterDir(resumeDir) ? resumeDir : null;
    if (resumeDir && !lora && resumeAdapter) throw new Error(`${resumeDir} holds a LoRA adapter: resume with the same --lora_rank (${readRank(resumeDir)})`);
    if (resumeDir && lora && !resumeAdapter) {
      throw new Error(`${resumeDir} holds full (merged) weights, so the LoRA adapter cannot be separated from its base: resume from a checkpoint-<step> directory (saved unmerged) or without --lora_rank`);
    }
    let policy: DecoderModel;
    let reference: DecoderModel | null = null;
    if (lora) {
      policy = loadMerged(pretrain, c.model, '--model', c.frozenDtype ?? 'float32').model; // the frozen base under the adapter
      owned.push(policy);
      policy.lora = resumeAdapter ? loadLoraAdapter(resumeAdapter, policy) : newAdapter(policy, c, c.seed);
      if (withRef) reference = policy;
    } else {
      policy = loadMerged(resumeDir ?? pretrain, c.model, '--model').model;
      owned.push(policy);
      if (withRef) {
        reference = loadMerged(pretrain, c.model, '--model', c.frozenDtype ?? 'float32').model;
        owned.push(reference);
      }
    }
    // --frozen_dtype: the separate reference, or the base under the LoRA adapter, held packed
    const frozen = c.frozenDtype ?? 'float32';
    if (frozen !== 'float32') {
      if (lora && isAdapterDir(pretrain)) throw new Error(`--frozen_dtype ${frozen} with --lora_rank: ${pretrain} is a LoRA adapter, so the final save would merge into the packed base; give its merged (full) model instead`);
      if (lora) packFrozenModel(policy, frozen);
      else if (reference) packFrozenModel(reference, frozen);
    }
    return {
      tokenizer, policy, reference, pretrainDir: pretrain, pretrainIsAdapter: isAdapterDir(pretrain),
      dispose() {
        for (const o of owned) o.dispose();
      },
    };
  } catch (e) {
    for (const o of owned) o.dispose();
    throw e;
  }
}
