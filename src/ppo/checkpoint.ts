/**
 * A PPO checkpoint is one directory, written atomically:
 *   <dir>/            the actor as an HF directory (full weights, merged LoRA, or a PEFT adapter naming the SFT dir),
 *                     tokenizer, trainer_state.json (+ optimizer.safetensors with both optimizers, for --resume)
 *   <dir>/critic/     the critic as an HF directory with its value head (or a PEFT adapter + value_head.safetensors)
 * The initial and reward models are not copied: trainer_state.json records their directories.
 * Replacing a directory keeps its other subdirectories (logs/, checkpoint-<episode>/) by hard-linking them into the new
 * one before it is published, so the old copy can be dropped without losing them.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Tokenizer } from '../hub/tokenizer.js';
import type { DecoderModel } from '../models/decoder.js';
import type { ValueModel } from '../models/value_model.js';
import { readTrainerState, writeDirAtomic, type TrainerState } from '../trainer/checkpoint_io.js';
import type { LoaderPosition } from '../data/batching.js';
import type { Optimization } from '../trainer/optimization.js';
import { writeCheckpointFiles } from '../trainer/stage_checkpoint.js';
import { CRITIC_SUBDIR } from './models.js';

/** PPO's own resume state, beside the common TrainerState fields (global_step counts episodes). */
export interface PpoState {
  kl_coef: number;
  ptx_position: LoaderPosition | null;
}

export type PpoTrainerState = TrainerState & { ppo: PpoState };

export interface PpoCheckpoint {
  actor: DecoderModel;
  critic: ValueModel;
  tokenizer: Tokenizer;
  /** Merge LoRA adapters into full weights (actor, critic) instead of writing PEFT adapters. */
  mergeActor: boolean;
  mergeCritic: boolean;
  /** Bases the adapters name (the SFT dir; the critic's starting dir). */
  actorBase: string;
  criticBase: string;
  actorExtra: Record<string, unknown>;
  criticExtra: Record<string, unknown>;
  optimizers?: { actor: Optimization; critic: Optimization };
  state: PpoTrainerState;
}

/** Hard-links the tree `src` into `dst` (copies across filesystems). */
function linkTree(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dst, e.name);
    if (e.isDirectory()) linkTree(from, to);
    else if (e.isFile()) {
      try {
        linkSync(from, to);
      } catch {
        copyFileSync(from, to);
      }
    }
  }
}

export async function savePpoCheckpoint(dir: string, c: PpoCheckpoint): Promise<void> {
  await writeDirAtomic(dir, async (tmp) => {
    await writeCheckpointFiles(tmp, {
      model: c.actor, tokenizer: c.tokenizer, configExtra: c.actorExtra, mergeLora: c.mergeActor, baseModelPath: c.actorBase,
      optimizers: c.optimizers, trainerState: c.state,
    });
    const criticDir = join(tmp, CRITIC_SUBDIR);
    mkdirSync(criticDir, { recursive: true });
    await writeCheckpointFiles(criticDir, {
      model: c.critic.backbone, valueHead: c.critic.head, tokenizer: c.tokenizer, configExtra: c.criticExtra,
      mergeLora: c.mergeCritic, baseModelPath: c.criticBase,
    });
    // Keep what else lived in the directory (logs, earlier checkpoints); stale model files are not kept.
    if (existsSync(dir)) {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory() && e.name !== CRITIC_SUBDIR && !existsSync(join(tmp, e.name))) linkTree(join(dir, e.name), join(tmp, e.name));
      }
    }
  });
}

export async function readPpoState(dir: string): Promise<PpoTrainerState> {
  const s = (await readTrainerState(dir)) as Partial<PpoTrainerState>;
  const ppo = s.ppo;
  if (!ppo || typeof ppo.kl_coef !== 'number') throw new Error(`${dir}/trainer_state.json: no "ppo" state, so it was not written by train_prompts`);
  return s as PpoTrainerState;
}
