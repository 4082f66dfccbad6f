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

/** Chooses a token from processed logits (modified in place). */
export function chooseToken(logits: Float32Array, opts: SamplingOptions, rng: Rng): number {
  if (!opts.doSample) return argmax(logits);
  const V = logits.length;
  const t = opts.temperature > 0 ? opts.temperature : 1;
  let idx = opts.topK > 0 && opts.topK < V ? topKIndices(logits, opts.topK) : Array.from({ length: V }, (_, i) => i);
  let max = -Infinity;
  for (const i of idx) max = Math.max(max, logits[i]! / t);
  let probs = idx.map((i) => Math.exp(logits[i]! / t - max));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / sum);
  if (opts.topP < 1) {
    // Keep the smallest set of most likely tokens whose mass reaches top_p (always at least one).
    const order = probs.map((_, j) => j).sort((a, b) => probs[b]! - probs[a]!);
    const keep = new Set<number>();
    let mass = 0;
    for (const j of order) {
      keep.add(j);
      mass += probs[j]!;
      if (mass >= opts.topP) break;
    }
    idx = idx.filter((_, j) => keep.has(j));
    probs = probs.filter((_, j) => keep.has(j));
    sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
  }
  let u = rng.next();
  for (let j = 0; j < probs.length; j++) {
    u -= probs[j]!;
    if (u <= 0) return idx[j]!;
  }
  return idx[idx.length - 1]!;
}
