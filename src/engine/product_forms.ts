/**
 * Which forms of matrix product the active backend runs fast, set by initBackend for the ops above to read
 * (src/models/ops/matmul.ts): the engine says what the backend does, the models decide how to use it.
 */

/** Whether batched products should be split into a loop of 2-D ones (stock wasm and cpu: true). */
let unbatched = true;
export function setUnbatchedMatmul(v: boolean): void {
  unbatched = v;
}
export function isUnbatched(): boolean {
  return unbatched;
}

/**
 * Whether products with transpose flags run as fast as plain ones (OpenBLAS, GPU backends): then gradients and
 * weight products pass the flags instead of materialising transposed copies first, which stock XNNPACK needs.
 */
let transposeFlagsFast = false;
export function setFastTransposedProducts(v: boolean): void {
  transposeFlagsFast = v;
}
export function fastTransposedProducts(): boolean {
  return transposeFlagsFast;
}
