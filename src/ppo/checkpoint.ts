/**
 * A PPO checkpoint is one directory, written atomically:
 *   <dir>/            the actor as an HF directory (full weights, merged LoRA, or a PEFT adapter naming the SFT dir),
 *                     tokenizer, trainer_state.json (+ optimizer.safetensors with both optimizers, for --resume)
 *   <dir>/critic/     the critic as an HF directory with its value head (or a PEFT adapter + value_head.safetensors)
 * The initial and reward models are not copied: trainer_state.json records their directories.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Tokenizer } from '../hub/tokenizer.js';
import type { DecoderModel } from '../models/decoder.js';
import type { ValueModel } from '../models/value_model.js';
import { readTrainerState, writeDirAtomic, type TrainerState } from '../trainer/checkpoint_io.js';
import { writeIntoDir } from '../trainer/final_save.js';
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

/**
 * Writes a checkpoint-<episode> directory whole (atomically), or, when `final`, the final actor and critic into
 * save_path beside its checkpoint-* and logs/ subdirectories, which stay where they are (see trainer/final_save.ts).
 */
export async function savePpoCheckpoint(dir: string, final: boolean, c: PpoCheckpoint): Promise<void> {
  await (final ? writeIntoDir : writeDirAtomic)(dir, async (tmp) => {
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
  });
}

export async function readPpoState(dir: string): Promise<PpoTrainerState> {
  const s = (await readTrainerState(dir)) as Partial<PpoTrainerState>;
  const ppo = s.ppo;
  if (!ppo || typeof ppo.kl_coef !== 'number') throw new Error(`${dir}/trainer_state.json: no "ppo" state, so it was not written by train_prompts`);
  return s as PpoTrainerState;
}
