/**
 * What every optimizer-step trainer (SFT, reward model, DPO) keeps in trainer_state.json and takes back on --resume
 * the same way: the optimizer's state and step, the loader's position, the best evaluation so far and the log history;
 * and the check that a resume keeps the settings its data position and schedule depend on.
 */
import { Writable } from 'node:stream';
import { AUTO_TEMPLATE } from '../data/templates/index.js';
import type { LoaderPosition } from '../data/batching.js';
import { resumeMismatches, type TrainerState } from './checkpoint_io.js';
import type { LoopControls } from './loop_controls.js';
import type { Optimization } from './optimization.js';
import { readResumeOptimizer } from './stage_checkpoint.js';

export type LogHistory = Record<string, number | null>[];

/** The pieces of a trainer whose state a checkpoint carries. */
export interface LoopParts {
  optimization: Optimization;
  loader: { readonly position: LoaderPosition; restore(position: LoaderPosition): void };
  controls: LoopControls;
}

/**
 * Takes back a checkpoint's loop state: the optimizer (saved under `optimizerName` in `dir`), the data position and
 * the best evaluation. Returns the log history to go on from.
 */
export function restoreLoopState(parts: LoopParts, state: TrainerState, dir: string, optimizerName: string): LogHistory {
  const saved = readResumeOptimizer(dir, optimizerName, state);
  parts.optimization.loadStateDict(saved.state, saved.globalStep);
  parts.loader.restore({ epoch: state.epoch, index: state.step_in_epoch });
  parts.controls.restoreBest(state);
  return [...state.log_history];
}

/** The loop's trainer_state.json as it stands; `rng` adds generator states beside the data seed. */
export function loopTrainerState(
  parts: LoopParts, o: { seed: number; args: object; logHistory: LogHistory; worldSize: number; rng?: Record<string, number> },
): TrainerState {
  const pos = parts.loader.position;
  return {
    global_step: parts.optimization.globalStep, epoch: pos.epoch, step_in_epoch: pos.index, ...parts.controls.bestState(),
    rng_state: { data: o.seed, ...o.rng }, args: JSON.parse(JSON.stringify(o.args)) as Record<string, unknown>,
    log_history: o.logHistory, world_size: o.worldSize,
  };
}

/**
 * Refuses a --resume whose `fixed` settings ([config field, flag]) differ from the checkpoint's, naming the first. With
 * `--prompt_template auto` the run takes the template the checkpoint recorded, so that one always matches.
 */
export function checkResumeFixed<C extends object>(
  dir: string, state: TrainerState, config: C, fixed: readonly (readonly [keyof C & string, string])[], worldSize: number,
): void {
  const c = config as Record<string, unknown>;
  const current = c.promptTemplate === AUTO_TEMPLATE ? { ...c, promptTemplate: state.args.promptTemplate } : c;
  const [m] = resumeMismatches(state, current, fixed.map(([k]) => k), worldSize);
  if (m) {
    const flag = fixed.find(([k]) => k === m.field)![1];
    throw new Error(`--resume ${dir}: --${flag} is ${m.now} but the checkpoint was trained with ${m.was}; resume with the same value`);
  }
}

/** A stream that drops what is written (the progress lines of a run asked to be quiet). */
export function nullStream(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}
