/**
 * A stage's final model is written to --save_path, which also holds the run's checkpoint-<step> directories and, by
 * default, its logs. A stage checkpoint replaces its directory whole (atomically), so the subdirectories are moved
 * to a holding directory beside it for the write and moved back after. A crash in between leaves them in
 * `.<name>.keep-*` beside save_path, never deleted.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** Runs `write()` (which replaces `dir` whole) while keeping the subdirectories `dir` had before. */
export async function replaceKeepingSubdirs(dir: string, write: () => Promise<void>): Promise<void> {
  const keep = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name) : [];
  if (!keep.length) return write();
  const holding = await mkdtemp(join(dirname(resolve(dir)), `.${basename(dir)}.keep-`));
  for (const name of keep) await rename(join(dir, name), join(holding, name));
  try {
    await write();
  } finally {
    await mkdir(dir, { recursive: true });
    for (const name of keep) await rename(join(holding, name), join(dir, name));
    await rm(holding, { recursive: true, force: true });
  }
}
