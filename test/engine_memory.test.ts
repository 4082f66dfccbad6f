/** Out-of-memory recognition for error notes: wasm's several failure messages, and nothing else. */
import { describe, it, expect, beforeAll } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { looksLikeOutOfMemory, outOfMemoryNote, wasmHeapBytes } from '../src/engine/memory.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('out-of-memory recognition', () => {
  it('knows the wasm failure messages and leaves other errors alone', () => {
    for (const m of ['Aborted()', 'RuntimeError: memory access out of bounds', 'Out of memory', 'Array buffer allocation failed']) {
      expect(looksLikeOutOfMemory(new Error(m)), m).toBe(true);
    }
    for (const m of ['data.jsonl line 3: field "output" is missing', "Cannot read properties of undefined (reading 'map')"]) {
      expect(looksLikeOutOfMemory(new Error(m)), m).toBe(false);
    }
  });

  it('names the backend, and has no wasm heap to report on cpu', () => {
    expect(wasmHeapBytes()).toBeNull();
    expect(outOfMemoryNote()).toMatch(/cpu backend ran out of memory/);
  });
});
