/**
 * Prompts as the policy reads them, shared by the online-RL stages: which template an SFT directory was trained
 * with, and whether its tokenizer puts BOS first.
 */
import type { Tokenizer } from '../hub/tokenizer.js';

export { recordedTemplate } from '../data/templates/index.js';

/** Whether the tokenizer's own post-processor puts BOS first (LLaMA, OPT), as SFT trained with it. */
export function tokenizerAddsBos(tokenizer: Tokenizer): boolean {
  const bos = tokenizer.bosTokenId;
  if (bos === null) return false;
  const plain = tokenizer.encode('a', { addSpecialTokens: false });
  const full = tokenizer.encode('a');
  return full.length > plain.length && full[0] === bos;
}
