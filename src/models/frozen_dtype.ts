/**
 * `--frozen_dtype float32|bf16|int8|nf4` (and `--load_in_8bit`, its int8 alias): the precision the stages hold their
 * frozen models in (references, reward models, the base under a LoRA or prefix adapter). Trainable weights stay
 * float32; packed weights are never saved or merged into (see DecoderModel.packFrozen).
 */
import { tf } from '../engine/tf.js';
import type { DecoderModel } from './decoder.js';
import { loadPretrained } from './pretrained.js';
import { ensurePackedKernels } from './ops/packed_kernels.js';
import { FROZEN_DTYPES, parseFrozenDtype, type FrozenDtype } from './ops/packed_weight.js';

export { FROZEN_DTYPES, type FrozenDtype };

export const FROZEN_DTYPE_HELP =
  'precision of the frozen models (reference, reward model, the base under LoRA/prefix/prompt tuning): float32, bf16, int8 (per-channel absmax) or nf4 (QLoRA\'s 4-bit, blocks of 64); expanded inside the products, never saved';

/** The dtype the flags ask for: --load_in_8bit means int8; with --frozen_dtype too they must agree. */
export function frozenDtypeFromFlags(frozenDtype: string | undefined, loadIn8bit: boolean | undefined): FrozenDtype {
  const asked = frozenDtype === undefined ? undefined : parseFrozenDtype(frozenDtype);
  if (loadIn8bit) {
    if (asked && asked !== 'int8') throw new Error(`--load_in_8bit means --frozen_dtype int8, but --frozen_dtype ${asked} was given too`);
    return 'int8';
  }
  return asked ?? 'float32';
}

/** Packs a frozen model's weight matrices (no-op for float32); fails early on a backend without the kernels. */
export function packFrozenModel(model: DecoderModel, dtype: FrozenDtype): void {
  if (dtype === 'float32' || model.packed.size) return;
  ensurePackedKernels();
  model.packFrozen(dtype);
}

/**
 * Bytes a frozen model in `dir` holds in `dtype` (tf.memory().numBytes over loading and packing, value head
 * included): for memory benches and reports.
 */
export function frozenModelBytes(dir: string, dtype: FrozenDtype): number {
  const before = tf.memory().numBytes;
  const { model, valueHead } = loadPretrained(dir, { frozenDtype: dtype });
  try {
    packFrozenModel(model, dtype);
    return tf.memory().numBytes - before;
  } finally {
    model.dispose();
    valueHead?.dispose();
  }
}
