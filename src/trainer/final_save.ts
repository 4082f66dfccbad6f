/**
 * A stage's final model goes into --save_path, which also holds the run's checkpoint-<step> directories and logs/.
 * Nothing already there is ever moved away for the write, so a crash at any moment cannot lose a checkpoint or a log:
 *
 *   1. the new model's files are written into `<save_path>/.final-save/new/` and fsynced;
 *   2. a journal naming them (and the previous model's files the new one lacks) is published by an atomic rename;
 *   3. each new entry is renamed into place (a file replaces its old version atomically; a directory such as PPO's
 *      critic/ first has its old version renamed aside into the staging dir); stale files are removed;
 *   4. the staging dir is removed.
 * A crash before 2 leaves save_path as it was (the staging dir is garbage); after 2, `recoverSaveDir` (run at the
 * next start) redoes what is left of 3 and 4, which is idempotent. So save_path holds either the previous model or
 * the new one, whole, once recovered; its subdirectories are never touched.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fsyncPath, fsyncTree, recoverInterruptedWrite, savePause } from './checkpoint_io.js';

/** The staging directory inside save_path. */
export const STAGING_DIR = '.final-save';
const JOURNAL = 'journal.json';
/**
 * Top-level files of a previous model that the new one replaces when it lacks them (weights, configs, tokenizer
 * files): a stale config.json beside a new adapter would load the old model. Other files (a README, notes) stay.
 */
const MODEL_FILE = /^[^.].*\.(safetensors|json|txt|model|jinja|bin)$/;

interface Journal {
  /** Top-level entries of the new model, in `new/`, to rename into save_path. */
  entries: string[];
  /** Top-level files of the previous model that the new one does not have. */
  remove: string[];
}

/**
 * Writes the files `write(tmp)` produces into `dir` (created if needed) as one crash-safe commit, keeping every
 * subdirectory of `dir` that the new files do not replace. If `write` throws, `dir` is untouched.
 */
export async function writeIntoDir<T>(dir: string, write: (tmp: string) => Promise<T>): Promise<T> {
  await fsp.mkdir(dir, { recursive: true });
  await finishCommit(dir); // a commit a crash cut short comes first
  const staging = path.join(dir, STAGING_DIR);
  const fresh = path.join(staging, 'new');
  await fsp.mkdir(fresh, { recursive: true });
  let result: T;
  try {
    result = await write(fresh);
    await fsyncTree(fresh);
    await savePause('written, journal not yet published', dir);
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    throw err;
  }
  const entries = await fsp.readdir(fresh);
  const remove = (await fsp.readdir(dir, { withFileTypes: true }))
    .filter((e) => !e.isDirectory() && MODEL_FILE.test(e.name) && !entries.includes(e.name))
    .map((e) => e.name);
  const journal: Journal = { entries, remove };
  const tmpJournal = path.join(staging, `${JOURNAL}.tmp`);
  await fsp.writeFile(tmpJournal, JSON.stringify(journal) + '\n');
  await fsyncPath(tmpJournal);
  await fsp.rename(tmpJournal, path.join(staging, JOURNAL)); // the commit point
  await fsyncPath(staging);
  await savePause('journal published, entries not yet moved', dir);
  await finishCommit(dir);
  return result;
}

/** Completes (journal present) or discards (no journal) a commit into `dir`; returns what it did, or null. */
async function finishCommit(dir: string): Promise<string | null> {
  const staging = path.join(dir, STAGING_DIR);
  if (!fs.existsSync(staging)) return null;
  const journalFile = path.join(staging, JOURNAL);
  if (!fs.existsSync(journalFile)) {
    await fsp.rm(staging, { recursive: true, force: true });
    return `${dir}: removed an unfinished final save (the model there is the previous one)`;
  }
  const journal = JSON.parse(await fsp.readFile(journalFile, 'utf8')) as Journal;
  const aside = path.join(staging, 'old');
  await fsp.mkdir(aside, { recursive: true });
  for (const name of journal.entries) {
    const from = path.join(staging, 'new', name);
    if (!fs.existsSync(from)) continue; // already in place
    const to = path.join(dir, name);
    const st = fs.lstatSync(to, { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      await fsp.rm(path.join(aside, name), { recursive: true, force: true });
      await fsp.rename(to, path.join(aside, name));
    }
    await fsp.rename(from, to);
  }
  for (const name of journal.remove) await fsp.rm(path.join(dir, name), { force: true });
  await fsyncPath(dir);
  await fsp.rm(staging, { recursive: true, force: true });
  return `${dir}: completed a final save that a crash had interrupted`;
}

/** Hidden siblings a checkpoint write leaves after a crash: `.<name>.tmp-*` and `.<name>.old-*`. */
const LEFTOVER = /^\.(.+)\.(?:tmp|old)-/;

/**
 * Puts `dir` (a save_path, or a checkpoint directory) back in order after a crash, and says what it did:
 * - finishes or discards an interrupted final save into it (see the module comment);
 * - for each checkpoint write inside it (or of `dir` itself) cut short, restores the previous copy if the crash fell
 *   between its two renames, and removes temp dirs (`recoverInterruptedWrite`);
 * - moves back the subdirectories that earlier versions parked in `.<name>.keep-*` beside it during a final save.
 * Run it once, on the main rank, before anything reads or writes `dir`.
 */
export async function recoverSaveDir(dir: string): Promise<string[]> {
  const notes: string[] = [];
  const self = await recoverInterruptedWrite(dir);
  if (self.restored) notes.push(`${dir}: restored the previous copy (${self.restored}) after an interrupted write`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return notes;
  notes.push(...(await recoverKeepDirs(dir)));
  const finished = await finishCommit(dir);
  if (finished) notes.push(finished);
  const names = new Set<string>();
  for (const e of await fsp.readdir(dir)) {
    const m = LEFTOVER.exec(e);
    if (m) names.add(m[1]!);
  }
  for (const name of names) {
    const r = await recoverInterruptedWrite(path.join(dir, name));
    if (r.restored) notes.push(`${path.join(dir, name)}: restored the previous copy after an interrupted write`);
  }
  return notes;
}

/** Subdirectories parked in `.<name>.keep-*` beside `dir` by a crashed final save of an earlier version. */
async function recoverKeepDirs(dir: string): Promise<string[]> {
  const parent = path.dirname(path.resolve(dir));
  const prefix = `.${path.basename(dir)}.keep-`;
  const notes: string[] = [];
  for (const holding of (await fsp.readdir(parent)).filter((n) => n.startsWith(prefix))) {
    const from = path.join(parent, holding);
    const left: string[] = [];
    for (const name of await fsp.readdir(from)) {
      if (fs.existsSync(path.join(dir, name))) left.push(name);
      else {
        await fsp.rename(path.join(from, name), path.join(dir, name));
        notes.push(`${dir}: moved ${name} back from ${from}`);
      }
    }
    if (left.length) notes.push(`${from}: kept ${left.join(', ')} (${dir} has entries of the same names)`);
    else await fsp.rm(from, { recursive: true, force: true });
  }
  return notes;
}

/** What `recoverRunDirs` needs of the strategy: only the main rank repairs, the others wait. */
export interface MainRankBarrier {
  isMain(): boolean;
  barrier(): void;
}

/**
 * The shared start of every trainer: repairs save_path and the --resume directory after a crash (main rank only,
 * then a barrier, so no rank reads a directory being repaired). Notes go to `log`.
 */
export async function recoverRunDirs(strategy: MainRankBarrier, dirs: (string | undefined)[], log: (m: string) => void): Promise<void> {
  if (strategy.isMain()) {
    for (const dir of new Set(dirs.filter((d): d is string => !!d).map((d) => path.resolve(d)))) {
      for (const note of await recoverSaveDir(dir)) log(`recovered: ${note}`);
    }
  }
  strategy.barrier();
}
