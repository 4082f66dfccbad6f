/**
 * A stage's checkpoint directory: an HF model directory (full weights, LoRA merged, or a PEFT adapter that names its
 * base), the tokenizer, `trainer_state.json`, and optionally `optimizer.safetensors` for an exact `--resume`.
 * Written atomically: a crash leaves the previous checkpoint, never a half-written one.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import type { DecoderModel } from '../models/decoder.js';
import { savePeftAdapter, savePretrained } from '../models/pretrained.js';
import type { ValueHead } from '../models/value_head.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../hub/safetensors.js';
import { readTrainerState, resumeMismatches, TRAINER_STATE_FILE, writeDirAtomic, writeTrainerState, type TrainerState } from './checkpoint_io.js';
import { writeIntoDir } from './final_save.js';
import type { AdamWStateDict } from './adamw.js';
import type { Optimization } from './optimization.js';

export const OPTIMIZER_FILE = 'optimizer.safetensors';

export interface CheckpointContents {
  model: DecoderModel;
  tokenizer: Tokenizer;
  valueHead?: ValueHead | null;
  /** Extra config.json fields (a reward model marks itself). */
  configExtra?: Record<string, unknown>;
  /** With a LoRA adapter: write merged full weights (true) or the PEFT adapter naming `baseModelPath` (false). */
  mergeLora?: boolean;
  baseModelPath?: string;
  /** Optimizers to write for `--resume`, by name (e.g. `actor`, `critic`). */
  optimizers?: Record<string, Optimization>;
  trainerState?: TrainerState;
}

/** Weights with the adapter folded in, computed on the side (the live model keeps training unmerged). */
function mergedParams(model: DecoderModel): Map<string, tf.Variable | tf.Tensor> {
  const out = new Map<string, tf.Variable | tf.Tensor>(model.params);
  if (!model.lora) return out;
  const merged = new Map<string, tf.Variable>();
  for (const [name, v] of model.params) merged.set(name, tf.variable(v, false, `${v.name}/merged`));
  model.lora.mergeInto(merged, model.spec);
  return merged;
}

export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  await writeDirAtomic(dir, (tmp) => writeCheckpointFiles(tmp, c));
}

/**
 * The final model, written into `savePath` as one crash-safe commit beside the run's checkpoint-* and logs/
 * subdirectories, which stay where they are (see final_save.ts).
 */
export async function saveFinalCheckpoint(savePath: string, c: CheckpointContents): Promise<void> {
  await writeIntoDir(savePath, (tmp) => writeCheckpointFiles(tmp, c));
}

/**
 * The files of a checkpoint, written straight into `tmp` (not atomic by itself): for callers that assemble several
 * models in one atomic directory (PPO writes the actor and, in a subdirectory, the critic).
 */
export async function writeCheckpointFiles(tmp: string, c: CheckpointContents): Promise<void> {
  if (c.model.virtualTokens && c.mergeLora) throw new Error('a prefix- or prompt-tuning adapter cannot be merged into full weights');
  if ((c.model.lora && !c.mergeLora) || c.model.virtualTokens) {
    // Adapter only: PEFT's layout, plus config.json-free pointer to the base so later stages load it by path.
    savePeftAdapter(tmp, c.model, c.baseModelPath ? resolve(c.baseModelPath) : '');
    if (c.valueHead) {
      writeSafetensors(join(tmp, 'value_head.safetensors'), c.valueHead.legacyTensors());
    }
    if (c.configExtra) writeFileSync(join(tmp, 'rlhf_config.json'), JSON.stringify(c.configExtra, null, 2) + '\n');
  } else {
    const params = mergedParams(c.model);
    try {
      savePretrained(c.model, tmp, { valueHead: c.valueHead ?? null, padTokenId: c.tokenizer.padTokenId, configExtra: c.configExtra, params });
    } finally {
      if (c.model.lora) for (const v of params.values()) v.dispose();
    }
  }
  await c.tokenizer.save(tmp);
  if (c.optimizers) writeOptimizers(join(tmp, OPTIMIZER_FILE), c.optimizers);
  if (c.trainerState) await writeTrainerState(tmp, c.trainerState);
}

function writeOptimizers(file: string, optimizers: Record<string, Optimization>): void {
  const tensors = new Map<string, TensorToWrite>();
  const meta: Record<string, string> = {};
  for (const [name, opt] of Object.entries(optimizers)) {
    const s = opt.stateDict();
    for (const [k, t] of s.tensors) tensors.set(`${name}.${k}`, { shape: t.shape, data: t.data });
    meta[`${name}.step`] = String(s.step);
    meta[`${name}.global_step`] = String(opt.globalStep);
    if (s.paramSteps) meta[`${name}.param_steps`] = JSON.stringify(s.paramSteps);
  }
  writeSafetensors(file, tensors, { format: 'pt', ...meta });
}

/** The saved state of optimizer `name`, or null when the checkpoint holds none. */
export function readOptimizerState(dir: string, name: string): { state: AdamWStateDict; globalStep: number } | null {
  const file = join(dir, OPTIMIZER_FILE);
  if (!existsSync(file)) return null;
  const { tensors, metadata } = readSafetensors(file, (n) => n.startsWith(`${name}.`));
  if (metadata[`${name}.step`] === undefined) return null;
  const state: AdamWStateDict = { step: Number(metadata[`${name}.step`]), tensors: new Map() };
  for (const [k, t] of tensors) state.tensors.set(k.slice(name.length + 1), { shape: t.shape, data: t.data as Float32Array });
  if (metadata[`${name}.param_steps`]) state.paramSteps = JSON.parse(metadata[`${name}.param_steps`]!) as Record<string, number>;
  return { state, globalStep: Number(metadata[`${name}.global_step`] ?? state.step) };
}

/**
 * The trainer state of a checkpoint `command` wrote, for an exact --resume: refused (naming what is missing and what
 * to do instead) without trainer_state.json or without optimizer state.
 */
export async function readResumableState(dir: string, command: string): Promise<TrainerState> {
  if (!existsSync(join(dir, TRAINER_STATE_FILE))) {
    throw new Error(`--resume ${dir}: no ${TRAINER_STATE_FILE}; pass a checkpoint-<step> directory written by ${command}`);
  }
  if (!existsSync(join(dir, OPTIMIZER_FILE))) {
    throw new Error(
      `--resume ${dir}: no ${OPTIMIZER_FILE} (it was saved without --need_optim_ckpt), so the run cannot continue exactly; ` +
        `start a new run from these weights with --pretrain ${dir}`,
    );
  }
  return readTrainerState(dir);
}

/** Optimizer `name`'s saved state for a resume, which must be at the trainer state's step. */
export function readResumeOptimizer(dir: string, name: string, state: TrainerState): { state: AdamWStateDict; globalStep: number } {
  const saved = readOptimizerState(dir, name);
  if (!saved) throw new Error(`${dir}/${OPTIMIZER_FILE} holds no optimizer state for "${name}"`);
  if (saved.globalStep !== state.global_step) {
    throw new Error(`${dir}: ${OPTIMIZER_FILE} is at step ${saved.globalStep} but ${TRAINER_STATE_FILE} at ${state.global_step}`);
  }
  return saved;
}

/**
 * Refuses to "resume" a checkpoint that has already done the whole run, which would otherwise save it again and exit
 * as if it had trained. `done`: steps (or episodes) in the checkpoint and in this run.
 */
export function checkResumeNotFinished(dir: string, done: { step: number; total: number; unit?: string }): void {
  const unit = done.unit ?? 'step';
  if (done.step >= done.total) {
    throw new Error(
      `--resume ${dir}: nothing to do: the checkpoint at ${unit} ${done.step} already finished the run of ${done.total} ${unit}s; ` +
        `to train further, start a new run from it with --pretrain ${dir}`,
    );
  }
}

/** A setting that may change on --resume, with what the change means (default: the run goes on with the new value). */
export interface ResumeNotedField {
  field: string;
  /** The flag, when it is not the snake_case form of `field`. */
  flag?: string;
  /** Compared as file paths (resolved). */
  path?: boolean;
  effect?: string;
}

/**
 * Notes (one line each, through `log`) the settings of `fields` that differ from the run that wrote the checkpoint,
 * e.g. `--lr was 0.001, now 0.0001: continuing with the new value`. Returns the lines.
 */
export function noteResumeChanges(dir: string, state: TrainerState, current: Record<string, unknown>, fields: readonly ResumeNotedField[], log: (m: string) => void): string[] {
  const lines: string[] = [];
  for (const f of fields) {
    let changed: boolean;
    let [was, now] = [state.args[f.field], current[f.field]];
    if (f.path && typeof was === 'string' && typeof now === 'string') changed = resolve(was) !== resolve(now);
    else changed = resumeMismatches(state, current, [f.field], 1).length > 0;
    if (!changed || now === undefined) continue;
    [was, now] = [JSON.stringify(was ?? null), JSON.stringify(now)];
    const flag = f.flag ?? `--${f.field.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`)}`;
    lines.push(`note: --resume ${dir} was trained with ${flag} ${was}, this run has ${now}: ${f.effect ?? 'continuing with the new value'}`);
  }
  for (const l of lines) log(l);
  return lines;
}
