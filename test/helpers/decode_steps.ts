/** Drives a DecodingSession through a prompt and `steps` fixed next tokens (the decode kernel tests share it). */
import type { DecodingSession } from '../../src/models/generation.js';

/**
 * The last-position logits of the prefill and of each step, feeding row b the token next(s, b) after step s; the
 * session is disposed at the end.
 */
export function sessionStepLogits(
  session: DecodingSession, prompts: number[][], masks: number[][], steps: number, next: (s: number, b: number) => number,
): Float32Array[] {
  const seqs = prompts.map((r) => [...r]);
  const m = masks.map((r) => [...r]);
  const out: Float32Array[] = [];
  try {
    for (let s = 0; s <= steps; s++) {
      const l = session.nextLogits(seqs, m);
      out.push(l.dataSync() as Float32Array);
      l.dispose();
      seqs.forEach((r, b) => r.push(next(s, b)));
      m.forEach((r) => r.push(1));
    }
    return out;
  } finally {
    session.dispose();
  }
}
