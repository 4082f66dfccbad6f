/**
 * The final reward model goes to --save_path, which also holds the run's checkpoint-<step> directories and, by
 * default, its logs. A stage checkpoint replaces its directory whole (atomically), so those subdirectories are moved
 * aside for the write and moved back after; a crash in between leaves them in `.<name>.keep-*` beside save_path.
 * (src/sft has the same helper; stages do not import each other, so it lives here too until src/trainer offers it.)
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** Runs `write()`, which replaces `dir` whole, keeping the subdirectories `dir` had before. */
export async function writeKeepingSubdirs(dir: string, write: () => Promise<void>): Promise<void> {
  const subdirs = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : [];
  if (subdirs.length === 0) return write();
  const aside = await mkdtemp(join(dirname(resolve(dir)), `.${basename(dir)}.keep-`));
  for (const name of subdirs) await rename(join(dir, name), join(aside, name));
  try {
    await write();
  } finally {
    await mkdir(dir, { recursive: true });
    for (const name of subdirs) await rename(join(aside, name), join(dir, name));
    await rm(aside, { recursive: true, force: true });
  }
}
