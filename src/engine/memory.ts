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

/** Whether an error most likely means the tensor backend ran out of memory. */
export function looksLikeOutOfMemory(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? e);
  if (/out of memory|OOM|Aborted\(\)|memory access out of bounds|Cannot allocate|failed to allocate|Array buffer allocation failed/i.test(msg)) return true;
  const heap = wasmHeapBytes();
  return heap !== null && heap > 3.5 * GiB;
}

/** One sentence on running out of tensor memory, with the backend's limit where it has one. */
export function outOfMemoryNote(): string {
  const heap = wasmHeapBytes();
  return heap !== null ? `the wasm backend ran out of memory (its heap holds at most 4 GiB; ${(heap / GiB).toFixed(1)} GiB in use)` : `the ${tf.getBackend()} backend ran out of memory`;
}
