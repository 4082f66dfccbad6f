/**
 * `--save_total_limit K`: after each periodic checkpoint, the oldest `checkpoint-<step>` directories of save_path
 * go until K remain (transformers' rotation). Never removed: the newest one (just written), the checkpoint of the
 * best evaluation, and the checkpoint the run was resumed from; they count towards K, so with them old enough a few
 * newer ones go instead.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface StepCheckpoint {
  step: number;
  dir: string;
}

const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;

/** The `checkpoint-<step>` directories of `savePath`, oldest step first. */
export function listStepCheckpoints(savePath: string): StepCheckpoint[] {
  if (!existsSync(savePath)) return [];
  return readdirSync(savePath, { withFileTypes: true })
    .flatMap((e) => {
      const m = e.isDirectory() ? CHECKPOINT_DIR.exec(e.name) : null;
      return m ? [{ step: Number(m[1]), dir: join(savePath, e.name) }] : [];
    })
    .sort((a, b) => a.step - b.step);
}

/** Which checkpoints to remove to keep `limit` (0: keep all), given the protected directories. Pure: decides only. */
export function checkpointsToPrune(checkpoints: readonly StepCheckpoint[], limit: number, protect: readonly string[]): StepCheckpoint[] {
  if (!Number.isInteger(limit) || limit < 0) throw new Error(`--save_total_limit must be an integer >= 0, got ${limit}`);
  if (limit === 0 || checkpoints.length <= limit) return [];
  const kept = new Set(protect.map((d) => resolve(d)));
  const newest = checkpoints[checkpoints.length - 1]!;
  kept.add(resolve(newest.dir));
  let excess = checkpoints.length - limit;
  const out: StepCheckpoint[] = [];
  for (const c of checkpoints) {
    if (excess <= 0) break;
    if (kept.has(resolve(c.dir))) continue;
    out.push(c);
    excess -= 1;
  }
  return out;
}

/** Removes the oldest checkpoints beyond `limit`; returns the directories removed. */
export function pruneCheckpoints(savePath: string, limit: number, protect: readonly string[]): string[] {
  const doomed = checkpointsToPrune(listStepCheckpoints(savePath), limit, protect);
  for (const c of doomed) rmSync(c.dir, { recursive: true, force: true });
  return doomed.map((c) => c.dir);
}
