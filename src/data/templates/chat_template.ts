/**
 * The model's own chat template (`chat_template` in tokenizer_config.json, or chat_template.jinja), rendered by
 * `@huggingface/jinja` with the variables transformers' `apply_chat_template` passes: `messages`,
 * `add_generation_prompt`, the special tokens as strings (`bos_token`, `eos_token`, ...), `raise_exception` and
 * `strftime_now`; no tools or documents. The rendered text carries its own special tokens (a `{{ bos_token }}`, the
 * end-of-turn markers), so it is tokenized as one text without adding any, as transformers does.
 *
 * Which characters are the assistant's (trained in SFT) is found by rendering prefixes of the conversation: the
 * prefix up to message i with `add_generation_prompt` ends where assistant turn i begins; the prefix through
 * message i ends where that turn ends (the longest common prefix with the whole rendering, so text a template only
 * adds after the last message, such as a final EOS, counts where it appears; before a later turn the reply ends at
 * the template's end-of-turn marker at the latest). Trailing whitespace after the turn's end marker (ChatML's
 * newline) belongs to the next turn.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import type { ChatMessage } from '../types.js';
import type { PromptTemplate, Segment } from './types.js';

/** The `--prompt_template` value that selects the model's own template. */
export const CHAT_TEMPLATE_NAME = 'chat_template';

export interface ChatTemplateSource {
  /** The Jinja text. */
  template: string;
  /** The file it came from, named in errors. */
  source: string;
  /** Special tokens by name (`bos_token`, `eos_token`, ..., `additional_special_tokens`), passed to the template. */
  specialTokens: Record<string, string | string[]>;
}

/** A template's `raise_exception(...)`: the conversation is one the template refuses. */
export class TemplateException extends Error {}

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** Python's `datetime.now().strftime(format)` for the directives chat templates use (local time). */
export function strftime(format: string, d: Date = new Date()): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const dayOfYear = Math.floor((Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 1)) / 86400000) + 1;
  const table: Record<string, () => string> = {
    a: () => WEEKDAYS[d.getDay()]!.slice(0, 3),
    A: () => WEEKDAYS[d.getDay()]!,
    b: () => MONTHS[d.getMonth()]!.slice(0, 3),
    B: () => MONTHS[d.getMonth()]!,
    d: () => pad(d.getDate()),
    m: () => pad(d.getMonth() + 1),
    y: () => pad(d.getFullYear() % 100),
    Y: () => String(d.getFullYear()),
    H: () => pad(d.getHours()),
    I: () => pad(((d.getHours() + 11) % 12) + 1),
    p: () => (d.getHours() < 12 ? 'AM' : 'PM'),
    M: () => pad(d.getMinutes()),
    S: () => pad(d.getSeconds()),
    j: () => pad(dayOfYear, 3),
    '%': () => '%',
  };
  return format.replace(/%(.)/g, (whole, c: string) => (table[c] ? table[c]!() : whole));
}

/** Python's range(stop) / range(start, stop[, step]). */
function pythonRange(start: number, stop?: number, step = 1): number[] {
  const [from, to] = stop === undefined ? [0, start] : [start, stop];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = from; step > 0 ? i < to : i > to; i += step) out.push(i);
  return out;
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

export class ChatTemplate implements PromptTemplate {
  readonly name = CHAT_TEMPLATE_NAME;
  readonly ownsSpecialTokens = true;
  readonly stop: readonly string[];
  private readonly compiled: Template;

  constructor(readonly spec: ChatTemplateSource) {
    try {
      this.compiled = new Template(spec.template);
    } catch (e) {
      throw new Error(`${spec.source}: the chat template does not parse: ${(e as Error).message}`);
    }
    this.stop = this.findStop();
  }

  /** What the template renders for `messages` (transformers' `apply_chat_template(..., tokenize=False)`). */
  renderText(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    const raiseException = (message: unknown): never => {
      throw new TemplateException(String(message));
    };
    const variables: Record<string, unknown> = {
      // the library's globals, with Python's strftime and a raise_exception we can tell apart
      true: true, false: false, none: null, True: true, False: false, None: null, range: pythonRange,
      ...this.spec.specialTokens,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      raise_exception: raiseException,
      strftime_now: (format: unknown) => strftime(String(format)),
    };
    try {
      const env = new Environment();
      for (const [key, value] of Object.entries(variables)) env.set(key, value);
      return new Interpreter(env).run(this.compiled.parsed).value as string;
    } catch (e) {
      const err = e as Error;
      const what = err instanceof TemplateException ? `raise_exception: ${err.message}` : err.message;
      throw new Error(`${this.spec.source}: ${what}`);
    }
  }

  /** The whole conversation, its assistant turns (up to their end marker) marked as trained. */
  render(messages: ChatMessage[]): Segment[] {
    const full = this.renderText(messages, false);
    const segments: Segment[] = [];
    let cursor = 0;
    messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      const before = this.renderText(messages.slice(0, i), true);
      if (!full.startsWith(before) || before.length < cursor) {
        throw new Error(
          `${this.spec.source}: the template renders the turns before assistant message ${i} differently once the ` +
            'conversation continues, so its reply cannot be located; use a built-in --prompt_template',
        );
      }
      const start = before.length;
      let end = commonPrefixLength(full, this.renderText(messages.slice(0, i + 1), false));
      // Before a later turn, what a template adds only at the very end (Phi-3's final EOS) can share characters with
      // the next turn's header ("<|" of "<|user|>"): the reply then ends at its end marker.
      const marker = this.stop[0];
      const markerAt = marker && i < messages.length - 1 ? full.indexOf(marker, start) : -1;
      if (markerAt >= 0 && markerAt + marker!.length < end) end = markerAt + marker!.length;
      while (end > start && /\s/.test(full[end - 1]!)) end--;
      if (end <= start) return; // an empty reply: nothing to train
      segments.push({ text: full.slice(cursor, start), train: false }, { text: full.slice(start, end), train: true });
      cursor = end;
    });
    segments.push({ text: full.slice(cursor), train: false });
    return segments.filter((s) => s.text !== '');
  }

  /** The conversation so far and the cue for the assistant's reply (`add_generation_prompt: true`). */
  renderPrompt(messages: ChatMessage[]): string {
    return this.renderText(messages, true);
  }

  /** The marker that closes an assistant turn (what a reply stops at): the first word after a reply's text. */
  private findStop(): string[] {
    const probe = 'rlhfStopProbe';
    try {
      const conversation: ChatMessage[] = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: probe }];
      const text = this.renderText(conversation, false);
      const at = text.lastIndexOf(probe);
      const after = at < 0 ? '' : text.slice(at + probe.length).trim().split(/\s+/)[0] ?? '';
      return after ? [after] : [];
    } catch {
      return []; // a template that refuses the probe conversation stops at EOS only
    }
  }
}

/** What a tokenizer offers about its chat template (src/hub's Tokenizer has these). */
export interface ChatTemplateHolder {
  readonly chatTemplate: string | null;
  readonly chatTemplateSource: string | null;
  specialTokensMap(): Record<string, string | string[]>;
}

/** The tokenizer's chat template, or null when it has none. */
export function chatTemplateOf(tokenizer: ChatTemplateHolder): ChatTemplate | null {
  if (tokenizer.chatTemplate === null) return null;
  return new ChatTemplate({
    template: tokenizer.chatTemplate,
    source: tokenizer.chatTemplateSource ?? 'tokenizer_config.json',
    specialTokens: tokenizer.specialTokensMap(),
  });
}
