/**
 * Fitting a rendered prompt into a token budget by shortening the user's own text, never the template around it: the
 * header, earlier turns and the generation cue ("### Response:") stay whole, so the model still sees a well-formed
 * prompt. The last user turn keeps its beginning, cut at a word boundary.
 */
import type { ChatSample } from './types.js';

export interface FittedPrompt {
  /** The sample as rendered: the user's text shortened when `cut`. */
  sample: ChatSample;
  ids: number[];
  text: string;
  /** The user's text was shortened. */
  cut: boolean;
  /** Even with no user text left the prompt was too long, so its start was dropped (template header included). */
  cutTemplate: boolean;
}

/** The sample with the last user turn's text (alpaca: its input, else its instruction) shortened to `keep` chars. */
function shortened(sample: ChatSample, keep: number): ChatSample {
  const messages = sample.messages.map((m) => ({ ...m }));
  const last = messages.map((m) => m.role).lastIndexOf('user');
  const cutText = (t: string): string => {
    if (keep >= t.length) return t;
    const head = t.slice(0, keep);
    const space = head.search(/\s\S*$/);
    return (space > keep / 2 ? head.slice(0, space) : head).trimEnd();
  };
  if (sample.alpaca) {
    const { instruction, input } = sample.alpaca;
    const alpaca = input ? { instruction, input: cutText(input) } : { instruction: cutText(instruction), input };
    if (last >= 0) messages[last]!.content = alpaca.input ? `${alpaca.instruction}\n${alpaca.input}` : alpaca.instruction;
    return { ...sample, messages, alpaca };
  }
  if (last >= 0) messages[last]!.content = cutText(messages[last]!.content);
  return { ...sample, messages };
}

/** Length of the text being shortened: what `shortened` cuts. */
function userTextLength(sample: ChatSample): number {
  if (sample.alpaca) return (sample.alpaca.input || sample.alpaca.instruction).length;
  const last = sample.messages.map((m) => m.role).lastIndexOf('user');
  return last >= 0 ? sample.messages[last]!.content.length : 0;
}

/**
 * Renders and tokenizes `sample`; when the ids exceed `maxLen`, finds (by bisection) the longest beginning of the user's
 * text that fits. `prefix` (e.g. BOS) is counted in the budget.
 */
export function fitPrompt(
  sample: ChatSample,
  render: (s: ChatSample) => string,
  encode: (text: string) => number[],
  maxLen: number,
  prefix: readonly number[] = [],
): FittedPrompt {
  const tokenize = (s: ChatSample) => {
    const text = render(s);
    return { text, ids: [...prefix, ...encode(text)] };
  };
  const full = tokenize(sample);
  if (full.ids.length <= maxLen) return { ...full, sample, cut: false, cutTemplate: false };
  const emptySample = shortened(sample, 0);
  const empty = tokenize(emptySample);
  if (empty.ids.length > maxLen) {
    // The template and earlier turns alone exceed the budget: keep the end, which holds the generation cue.
    return { sample, text: full.text, ids: full.ids.slice(full.ids.length - maxLen), cut: true, cutTemplate: true };
  }
  let lo = 0; // fits
  let hi = userTextLength(sample); // does not fit
  let best = { ...empty, sample: emptySample };
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const s = shortened(sample, mid);
    const t = tokenize(s);
    if (t.ids.length <= maxLen) {
      lo = mid;
      best = { ...t, sample: s };
    } else hi = mid;
  }
  return { ...best, cut: true, cutTemplate: false };
}
