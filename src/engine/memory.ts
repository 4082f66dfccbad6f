/**
 * Tensor memory facts for error messages and reports. The wasm backend's heap is a 32-bit WebAssembly memory (at most
 * 4 GiB) that never shrinks; when it is full, XNNPACK and the backend fail in several ways (`Aborted()`, "memory
 * access out of bounds", a failed allocation, or a later undefined read), so a failure is recognised by its message
 * or by a nearly full heap.
 */
import { tf } from './tf.js';

const GiB = 2 ** 30;

/** High-water mark of the wasm heap in bytes, or null on other backends. */
export function wasmHeapBytes(): number | null {
  const b = tf.findBackend('wasm') as unknown as { wasm?: { HEAPU8?: Uint8Array } } | null;
  return tf.getBackend() === 'wasm' && b?.wasm?.HEAPU8 ? b.wasm.HEAPU8.length : null;
}

/**
 * Messages that mean memory ran out, as whole words only: "OOM" must not match inside "bloom" or "room". From V8
 * ("JavaScript heap out of memory", "Array buffer allocation failed"), the wasm runtime ("Aborted()", "memory access
 * out of bounds"), CUDA/TensorFlow ("CUDA_ERROR_OUT_OF_MEMORY", "OOM when allocating", "failed to allocate") and the OS
 * ("Cannot allocate memory", ENOMEM).
 */
const OUT_OF_MEMORY_PATTERNS: RegExp[] = [
  /\bout of memory\b/i,
  /\bOUT_OF_MEMORY\b/,
  /\bOOM\b/,
  /\bAborted\(\)/,
  /\bmemory access out of bounds\b/i,
  /\bcannot allocate memory\b/i,
  /\bENOMEM\b/,
  /\bfailed to allocate\b/i,
  /\ballocation failed\b/i,
];

/** Whether an error most likely means the tensor backend ran out of memory. */
export function looksLikeOutOfMemory(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? e);
  if (OUT_OF_MEMORY_PATTERNS.some((p) => p.test(msg))) return true;
  const heap = wasmHeapBytes();
  return heap !== null && heap > 3.5 * GiB;
}

/** One sentence on running out of tensor memory, with the backend's limit where it has one. */
export function outOfMemoryNote(): string {
  const heap = wasmHeapBytes();
  return heap !== null ? `the wasm backend ran out of memory (its heap holds at most 4 GiB; ${(heap / GiB).toFixed(1)} GiB in use; --backend native has no such limit once its addon is built: npm run build:engine)` : `the ${tf.getBackend()} backend ran out of memory`;
}
