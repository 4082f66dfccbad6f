/**
 * Prompts as the policy reads them, shared by the online-RL stages: which template an SFT directory was trained
 * with, and whether its tokenizer puts BOS first.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tokenizer } from '../hub/tokenizer.js';

/**
 * The template an SFT directory was trained with, if it recorded one: `rlhf.prompt_template` in config.json or
 * rlhf_config.json, else `args.promptTemplate` (or `prompt_template`) in its trainer_state.json.
 */
export function recordedTemplate(dir: string): string | null {
  const read = (file: string): Record<string, unknown> | null => {
    if (!existsSync(file)) return null;
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  for (const file of ['config.json', 'rlhf_config.json']) {
    const rlhf = read(join(dir, file))?.rlhf as Record<string, unknown> | undefined;
    const t = rlhf?.prompt_template ?? rlhf?.template;
    if (typeof t === 'string') return t;
  }
  const args = read(join(dir, 'trainer_state.json'))?.args as Record<string, unknown> | undefined;
  const t = args?.promptTemplate ?? args?.prompt_template;
  return typeof t === 'string' ? t : null;
}

/** Whether the tokenizer's own post-processor puts BOS first (LLaMA, OPT), as SFT trained with it. */
export function tokenizerAddsBos(tokenizer: Tokenizer): boolean {
  const bos = tokenizer.bosTokenId;
  if (bos === null) return false;
  const plain = tokenizer.encode('a', { addSpecialTokens: false });
  const full = tokenizer.encode('a');
  return full.length > plain.length && full[0] === bos;
}
