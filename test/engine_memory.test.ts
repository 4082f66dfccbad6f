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
    for (const m of ['OOM when allocating tensor with shape[8,1024]', 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory',
      'CUDA_ERROR_OUT_OF_MEMORY: out of memory', 'ENOMEM: Cannot allocate memory, read', 'failed to allocate 4294967296 bytes']) {
      expect(looksLikeOutOfMemory(new Error(m)), m).toBe(true);
    }
    // "oom" inside ordinary words (a bloom model, no room) is not running out of memory.
    for (const m of ['data.jsonl line 3: field "output" is missing', "Cannot read properties of undefined (reading 'map')",
      'bigscience/bloom-560m: tensor h.0 has shape [3] but config.json implies [4]', '--max_len 8 leaves no room for tokens',
      'unsupported model_type "bloomz" (supported: gpt2, opt, bloom, llama)', 'Zoom: room, broom, Bloom, OOMPH']) {
      expect(looksLikeOutOfMemory(new Error(m)), m).toBe(false);
    }
  });

  it('names the backend, and has no wasm heap to report on cpu', () => {
    expect(wasmHeapBytes()).toBeNull();
    expect(outOfMemoryNote()).toMatch(/cpu backend ran out of memory/);
  });
});
