/** Shape arithmetic shared by the hand-written kernels. */

/** Row-major strides of `shape`, in elements (the last axis has stride 1). */
export function rowMajorStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}
