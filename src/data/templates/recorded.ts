/**
 * The template a model directory was trained with, when its training run recorded one: `rlhf.prompt_template` in
 * config.json (or rlhf_config.json beside a PEFT adapter), else `args.promptTemplate` (or `prompt_template`) in its
 * trainer_state.json. `auto` is not a record (it names no template).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function recordedTemplate(dir: string): string | null {
  const read = (file: string): Record<string, unknown> | null => {
    if (!existsSync(file)) return null;
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  const named = (t: unknown): t is string => typeof t === 'string' && t !== 'auto';
  for (const file of ['config.json', 'rlhf_config.json']) {
    const rlhf = read(join(dir, file))?.rlhf as Record<string, unknown> | undefined;
    const t = rlhf?.prompt_template ?? rlhf?.template;
    if (named(t)) return t;
  }
  const args = read(join(dir, 'trainer_state.json'))?.args as Record<string, unknown> | undefined;
  const t = args?.promptTemplate ?? args?.prompt_template;
  return named(t) ? t : null;
}
