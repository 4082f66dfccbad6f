/** The precisions frozen weights can be held in (no tensor imports: configs and flag parsers read this). */
export const FROZEN_DTYPES = ['float32', 'bf16', 'int8', 'nf4'] as const;
export type FrozenDtype = (typeof FROZEN_DTYPES)[number];
export type PackedFormat = Exclude<FrozenDtype, 'float32'>;

export function parseFrozenDtype(value: string, flag = '--frozen_dtype'): FrozenDtype {
  if (!(FROZEN_DTYPES as readonly string[]).includes(value)) throw new Error(`${flag} must be one of ${FROZEN_DTYPES.join(', ')} (got "${value}")`);
  return value as FrozenDtype;
}
