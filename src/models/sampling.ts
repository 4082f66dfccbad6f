/**
 * Next-token choice from one row of logits, on the host: repetition penalty, temperature, top-k, top-p, then a draw
 * from the seeded RNG (or argmax when greedy). Order and semantics follow HF's logits processors.
 */
import type { Rng } from '../engine/rng.js';

export interface SamplingOptions {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  /** HF's CTRL-style penalty: logits of tokens already in the sequence are divided (if > 0) or multiplied by it. */
  repetitionPenalty: number;
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const t of new Set(seen)) {
    const v = logits[t]!;
    logits[t] = v > 0 ? v / penalty : v * penalty;
  }
}

/**
 * Indices of the k largest values, largest first, ties in index order: what a stable descending sort of all indices
 * would put first, found with a k-element heap in O(V log k) (sorting 50k logits per row per step cost ~40 ms).
 */
export function topKIndices(x: ArrayLike<number>, k: number): number[] {
  const better = (a: number, b: number) => x[a]! > x[b]! || (x[a] === x[b] && a < b);
  const heap: number[] = []; // the k best so far; heap[0] is the worst of them
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < heap.length && better(heap[w]!, heap[l]!)) w = l;
      if (r < heap.length && better(heap[w]!, heap[r]!)) w = r;
      if (w === i) return;
      [heap[i], heap[w]] = [heap[w]!, heap[i]!];
      i = w;
    }
  };
  for (let i = 0; i < x.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let c = heap.length - 1; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!better(heap[p]!, heap[c]!)) break;
        [heap[p], heap[c]] = [heap[c]!, heap[p]!];
        c = p;
      }
    } else if (better(i, heap[0]!)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => (better(a, b) ? -1 : 1));
}

/**
 * Chooses a token from processed logits (modified in place). Works on typed arrays over the candidates (all V tokens,
 * or the top k) without per-token JS arrays: with a 50k vocabulary the array version cost ~50 ms per row per step.
 * The arithmetic (and so every draw for a given RNG state) is that of the straightforward version: probabilities
 * normalised in candidate order, the nucleus cut from a stable descending sort, kept tokens walked in candidate order.
 */
export function chooseToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  if (!opts.doSample) return argmax(logits);
  const V = logits.length;
  const t = opts.temperature > 0 ? opts.temperature : 1;
  const top = opts.topK > 0 && opts.topK < V ? topKIndices(logits, opts.topK) : null;
  const n = top ? top.length : V;
  const at = top ? (j: number) => top[j]! : (j: number) => j;
  let max = -Infinity;
  for (let j = 0; j < n; j++) max = Math.max(max, logits[at(j)]! / t);
  const probs = new Float64Array(n);
  let sum = 0;
  for (let j = 0; j < n; j++) {
    probs[j] = Math.exp(logits[at(j)]! / t - max);
    sum += probs[j]!;
  }
  for (let j = 0; j < n; j++) probs[j] = probs[j]! / sum;
  let u = rng.next();
  if (opts.topP < 1) {
    // Keep the smallest set of most likely tokens whose mass reaches top_p (always at least one).
    const order = new Uint32Array(n);
    for (let j = 0; j < n; j++) order[j] = j;
    order.sort((a, b) => probs[b]! - probs[a]! || a - b);
    const keep = new Uint8Array(n);
    let mass = 0;
    for (const j of order) {
      keep[j] = 1;
      mass += probs[j]!;
      if (mass >= opts.topP) break;
    }
    let kept = 0;
    let last = 0;
    for (let j = 0; j < n; j++) {
      if (keep[j]) {
        kept += probs[j]!;
        last = j;
      }
    }
    for (let j = 0; j < n; j++) {
      if (!keep[j]) continue;
      u -= probs[j]! / kept;
      if (u <= 0) return at(j);
    }
    return at(last);
  }
  for (let j = 0; j < n; j++) {
    u -= probs[j]!;
    if (u <= 0) return at(j);
  }
  return at(n - 1);
}
