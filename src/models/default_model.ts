/** Where the model that ships with the package lives (used when a command gets no --pretrain). */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Package root: two levels above this file in both src/ (tsx) and dist/ (compiled). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_MODEL_NAME = 'tiny-chat';

export function defaultModelDir(): string {
  const dir = join(PACKAGE_ROOT, 'models', DEFAULT_MODEL_NAME);
  if (!existsSync(join(dir, 'config.json'))) {
    throw new Error(`no --pretrain given and the default model is missing (${dir}); pass --pretrain DIR`);
  }
  return dir;
}
