/**
 * Crash-safe checkpoint directories and the `trainer_state.json` that makes `--resume` possible.
 *
 * A checkpoint is written into a hidden temp dir beside its final place, fsynced, then renamed into place. If a
 * previous checkpoint of the same name exists it is renamed aside first and removed after, so at every instant the
 * final path either holds a complete checkpoint or does not exist (and `recoverInterruptedWrite` puts the old one
 * back after a crash between the two renames).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

const TMP_TAG = '.tmp-';
const ASIDE_TAG = '.old-';

function siblingPrefix(finalDir: string, tag: string): string {
  return `.${path.basename(finalDir)}${tag}`;
}

/** fsyncs every file and directory under `dir` (and `dir` itself), so a rename publishes data already on disk. */
export async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(full);
    else if (entry.isFile()) await fsyncPath(full);
  }
  await fsyncPath(dir);
}

export async function fsyncPath(p: string): Promise<void> {
  const handle = await fsp.open(p, 'r');
  try {
    await handle.sync();
  } catch (err) {
    // Some filesystems refuse fsync on directories (EINVAL/EISDIR); the data files were synced, which is what matters.
    if (!isErrno(err, 'EINVAL', 'EISDIR', 'EPERM')) throw err;
  } finally {
    await handle.close();
  }
}

/**
 * `RLHF_TS_SAVE_PAUSE_MS=<ms>`: a pause at each publishing point of a checkpoint write, announced on stderr, so that
 * fault-injection tests can land a signal or a kill -9 at a known moment of a save. It only delays; it never changes
 * what is written.
 */
export async function savePause(phase: string, dir: string): Promise<void> {
  const ms = Number(process.env.RLHF_TS_SAVE_PAUSE_MS ?? 0);
  if (!(ms > 0)) return;
  process.stderr.write(`save paused ${ms} ms (${phase}): ${dir}\n`);
  await new Promise((done) => setTimeout(done, ms));
}

function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

/**
 * Runs `write(tmpDir)` on a fresh temp dir beside `finalDir`, then publishes it as `finalDir`, replacing any previous
 * one. If `write` throws, the temp dir is removed, `finalDir` is untouched, and the error is rethrown.
 */
export async function writeDirAtomic<T>(finalDir: string, write: (tmpDir: string) => Promise<T>): Promise<T> {
  const parent = path.dirname(path.resolve(finalDir));
  await fsp.mkdir(parent, { recursive: true });
  const tmpDir = await fsp.mkdtemp(path.join(parent, siblingPrefix(finalDir, TMP_TAG)));
  let result: T;
  try {
    result = await write(tmpDir);
    await fsyncTree(tmpDir);
    await savePause('written, not yet published', finalDir);
  } catch (err) {
    await fsp.rm(tmpDir, { recursive: true, force: true });
    throw err;
  }

  // 1. Move the previous checkpoint aside (rename is atomic; a crash here leaves it recoverable, never half-written).
  let aside: string | undefined;
  if (fs.existsSync(finalDir)) {
    aside = path.join(parent, `${siblingPrefix(finalDir, ASIDE_TAG)}${Date.now()}-${process.pid}`);
    await fsp.rename(finalDir, aside);
  }
  // 2. Publish the new one; on failure put the old one back.
  try {
    await fsp.rename(tmpDir, finalDir);
  } catch (err) {
    if (aside !== undefined) await fsp.rename(aside, finalDir);
    await fsp.rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
  await fsyncPath(parent);
  // 3. Only now is the old checkpoint garbage.
  if (aside !== undefined) await fsp.rm(aside, { recursive: true, force: true });
  return result;
}

/** What `recoverInterruptedWrite` did. */
export interface RecoveryReport {
  /** The aside copy renamed back to `finalDir` (when a crash fell between the two renames), if any. */
  restored?: string;
  /** Temp and aside dirs removed. */
  removed: string[];
}

/**
 * Cleans up after a crash during `writeDirAtomic(finalDir, ...)`: if `finalDir` is missing but an older copy was
 * moved aside, it is put back; leftover temp dirs and aside copies are removed. Call before reading `finalDir` on
 * resume; never while another process may be writing the same `finalDir`.
 */
export async function recoverInterruptedWrite(finalDir: string): Promise<RecoveryReport> {
  const parent = path.dirname(path.resolve(finalDir));
  const report: RecoveryReport = { removed: [] };
  if (!fs.existsSync(parent)) return report;
  const names = await fsp.readdir(parent);
  const asides = names.filter((n) => n.startsWith(siblingPrefix(finalDir, ASIDE_TAG))).sort();
  const temps = names.filter((n) => n.startsWith(siblingPrefix(finalDir, TMP_TAG)));
  if (!fs.existsSync(finalDir) && asides.length > 0) {
    const newest = asides.pop()!; // names end in <ms>-<pid>; the newest is the last checkpoint published
    await fsp.rename(path.join(parent, newest), finalDir);
    report.restored = newest;
  }
  for (const name of [...temps, ...asides]) {
    await fsp.rm(path.join(parent, name), { recursive: true, force: true });
    report.removed.push(name);
  }
  return report;
}

/** File name of the trainer state inside a checkpoint dir. */
export const TRAINER_STATE_FILE = 'trainer_state.json';

/** Everything besides weights and optimizer moments that `--resume` needs (snake_case like HF's trainer_state.json). */
export interface TrainerState {
  /** Optimizer steps taken so far. */
  global_step: number;
  /** Epoch in progress (0-based). */
  epoch: number;
  /** Micro-batches of the current epoch already consumed, so resume skips them. */
  step_in_epoch: number;
  /** Best evaluation metric seen so far (lower or higher is better per trainer), or null before the first eval. */
  best_metric: number | null;
  /** Step of the evaluation that gave best_metric (src/trainer/loop_controls.ts). */
  best_step?: number | null;
  /** Where the best model was kept (`--save_best`), or null. */
  best_model_checkpoint?: string | null;
  /** States of the run's seeded generators by role (e.g. `{data: 123, dropout: 456}`, from `Rng.getState()`). */
  rng_state: Record<string, number>;
  /** The command-line arguments / config the run started with, for checking that a resume uses the same ones. */
  args: Record<string, unknown>;
  /** The last logged metric records (`{step, ...metrics}`), at most `maxLogHistory` of them. */
  log_history: Record<string, number | null>[];
  /**
   * Ranks of the run that wrote it (absent: 1). Under ddp/zero2 `args.batchSize` is per rank and the data position
   * counts global batches of batchSize × world_size, so a resume compares that product.
   */
  world_size?: number;
}

/** A setting of a resumed run that differs from the run that wrote the checkpoint. */
export interface ResumeMismatch {
  field: string;
  was: string;
  now: string;
}

/**
 * The `fields` of the current config that differ from the checkpoint's `args`. `batchSize` is compared as the global
 * batch (per-rank batch × ranks), so a 2-rank run with batch 4 resumes exactly as a 1-rank run with batch 8.
 */
export function resumeMismatches(state: TrainerState, current: Record<string, unknown>, fields: readonly string[], worldSize: number): ResumeMismatch[] {
  const show = (v: unknown) => JSON.stringify(v ?? null);
  const out: ResumeMismatch[] = [];
  const wasRanks = state.world_size ?? 1;
  for (const field of fields) {
    const [was, now] = [state.args[field], current[field]];
    if (field === 'batchSize' && typeof was === 'number' && typeof now === 'number') {
      if (was * wasRanks !== now * worldSize) {
        const global = (b: number, n: number) => (n === 1 ? String(b) : `${b} × ${n} ranks = ${b * n}`);
        out.push({ field, was: global(was, wasRanks), now: global(now, worldSize) });
      }
    } else if (show(was) !== show(now)) out.push({ field, was: show(was), now: show(now) });
  }
  return out;
}

/** Writes `<dir>/trainer_state.json`, keeping only the last `maxLogHistory` log records. */
export async function writeTrainerState(dir: string, state: TrainerState, maxLogHistory = 100): Promise<void> {
  const file = path.join(dir, TRAINER_STATE_FILE);
  validateTrainerState(state, file);
  const tail = state.log_history.slice(Math.max(0, state.log_history.length - maxLogHistory));
  await fsp.writeFile(file, JSON.stringify({ ...state, log_history: tail }, null, 2) + '\n');
}

/** Reads and validates `<dir>/trainer_state.json`. */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const file = path.join(dir, TRAINER_STATE_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: cannot read trainer state: ${(err as Error).message}`);
  }
  validateTrainerState(parsed, file);
  return parsed;
}

function validateTrainerState(value: unknown, file: string): asserts value is TrainerState {
  const fail = (field: string, want: string): never => {
    throw new Error(`${file}: field '${field}' must be ${want}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('(root)', 'an object');
  const s = value as Record<string, unknown>;
  for (const field of ['global_step', 'epoch', 'step_in_epoch'] as const) {
    if (!Number.isSafeInteger(s[field]) || (s[field] as number) < 0) fail(field, 'an integer >= 0');
  }
  if (s.best_metric !== null && typeof s.best_metric !== 'number') fail('best_metric', 'a number or null');
  const isPlainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isPlainObject(s.rng_state)) fail('rng_state', 'an object of generator states');
  for (const [name, v] of Object.entries(s.rng_state as object)) {
    if (!Number.isSafeInteger(v)) fail(`rng_state.${name}`, 'an integer');
  }
  if (!isPlainObject(s.args)) fail('args', 'an object');
  if (s.world_size !== undefined && !(Number.isSafeInteger(s.world_size) && (s.world_size as number) >= 1)) fail('world_size', 'an integer >= 1');
  if (!Array.isArray(s.log_history)) fail('log_history', 'an array');
  (s.log_history as unknown[]).forEach((record, i) => {
    if (!isPlainObject(record)) fail(`log_history[${i}]`, 'an object');
  });
}
