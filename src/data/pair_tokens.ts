/**
 * Prompt + answer token sequences, shared by the stages trained on preference data (reward model, DPO and its
 * relatives): the prompt rendered by a template and the answer encoded separately (no token straddles them, and an
 * answer's tokens are the same in every context), then fitted into `maxLen`:
 *   1. If the sequence fits, nothing is cut.
 *   2. Otherwise the PROMPT loses tokens from its LEFT (the oldest turns matter least) until the answer fits whole,
 *      but the prompt keeps at least its last ⌊room/2⌋ tokens (room = maxLen − BOS).
 *   3. If the answer is still too long, the ANSWER is cut on its RIGHT (losing its EOS).
 */
import { DataError, type RecordLocation } from './location.js';
import { joinSegments, type PromptTemplate } from './templates/index.js';
import type { TextEncoderLike } from './sft_samples.js';
import type { ChatMessage } from './types.js';

/** Whether the tokenizer itself puts BOS in front when asked for special tokens (LLaMA and OPT do, GPT-2 does not). */
export function tokenizerAddsBos(tokenizer: TextEncoderLike): boolean {
  const bos = tokenizer.bosTokenId;
  if (bos === null) return false;
  return tokenizer.encode('a', { addSpecialTokens: true })[0] === bos && tokenizer.encode('a', { addSpecialTokens: false })[0] !== bos;
}

/** The rendered prompt and the answer text that follows it (the template's own rendering of the whole turn). */
export function renderPairSide(template: PromptTemplate, pair: { prompt: ChatMessage[]; location?: RecordLocation }, answer: string): { prompt: string; answer: string } {
  let prompt: string;
  let full: string;
  try {
    prompt = template.renderPrompt(pair.prompt);
    full = joinSegments(template.render([...pair.prompt, { role: 'assistant', content: answer }]));
  } catch (err) {
    throw new DataError(pair.location, `template "${template.name}": ${(err as Error).message}`);
  }
  if (!full.startsWith(prompt)) {
    throw new DataError(pair.location, `template "${template.name}" renders the conversation with a different prefix than its prompt`);
  }
  return { prompt, answer: full.slice(prompt.length) };
}

/** BOS + prompt and the answer, fitted into maxLen by the rule in the file comment, kept apart. */
export function fitPromptAnswer(
  bos: number[],
  prompt: number[],
  answer: number[],
  maxLen: number,
): { prompt: number[]; answer: number[]; promptCut: boolean; answerCut: boolean } {
  const room = maxLen - bos.length;
  if (room < 2) throw new Error(`--max_len ${maxLen} leaves no room for a prompt token and an answer token`);
  if (prompt.length + answer.length <= room) return { prompt: [...bos, ...prompt], answer: [...answer], promptCut: false, answerCut: false };
  const promptKeep = Math.min(prompt.length, Math.max(room - answer.length, Math.floor(room / 2)));
  const answerKeep = room - promptKeep;
  return {
    prompt: [...bos, ...prompt.slice(prompt.length - promptKeep)],
    answer: answer.slice(0, answerKeep),
    promptCut: promptKeep < prompt.length,
    answerCut: answerKeep < answer.length,
  };
}

/** The same as one sequence. */
export function fitSequence(bos: number[], prompt: number[], answer: number[], maxLen: number): { ids: number[]; promptCut: boolean; answerCut: boolean } {
  const f = fitPromptAnswer(bos, prompt, answer, maxLen);
  return { ids: [...f.prompt, ...f.answer], promptCut: f.promptCut, answerCut: f.answerCut };
}
