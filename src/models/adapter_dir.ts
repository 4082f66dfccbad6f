/** Telling a PEFT adapter directory from a full model directory, and finding the base an adapter names. */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

/** The base directory a LoRA-adapter directory names (absolute), or null when `dir` holds full weights. */
export function adapterBase(dir: string): string | null {
  const file = join(dir, 'adapter_config.json');
  if (existsSync(join(dir, 'config.json')) || !existsSync(file)) return null;
  const base = (JSON.parse(readFileSync(file, 'utf8')) as { base_model_name_or_path?: string }).base_model_name_or_path ?? '';
  return isAbsolute(base) ? base : resolve(dir, base);
}
