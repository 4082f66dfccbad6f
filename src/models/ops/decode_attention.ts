/**
 * The model side of the native decode kernel (engine/native_decode.ts): which models it covers, and where each
 * attention layout keeps its heads. Decided once per generation call; a model it does not cover decodes through
 * the tensor path (ops/attention.ts with a cache of tensors).
 */
import type { ModelConfig } from '../config.js';
import type { LayerSpec } from '../architectures.js';
import { nativeDecodeUnavailable, type HeadLayout } from '../../engine/native_decode.js';

type AttentionSpec = LayerSpec['attn'];

/** Why `model` cannot decode through the native kernel ('' when it can). */
export function nativeDecodeUnsupported(config: ModelConfig, attns: AttentionSpec[], hasVirtualTokens: boolean): string {
  const why = nativeDecodeUnavailable();
  if (why) return why;
  if (config.positions === 'alibi') return 'ALiBi position bias';
  if (hasVirtualTokens) return 'prefix or prompt tuning (virtual tokens)';
  if (attns.some((a) => a.qNorm && a.kind !== 'separate')) return 'per-head q/k norms on a fused projection';
  return '';
}

/**
 * Head offsets and strides in the projection outputs [B·T, ·]: separate q, k, v; fused q|k|v (GPT-2, Phi-3); or
 * per head q, k, v (GPT-NeoX) in one tensor.
 */
export function headLayout(kind: AttentionSpec['kind'], H: number, Hkv: number, hs: number): HeadLayout {
  if (kind === 'separate') return { qOffset: 0, qRow: H * hs, kOffset: 0, kRow: Hkv * hs, vOffset: 0, vRow: Hkv * hs, headStride: hs };
  if (kind === 'fused_concat') {
    const row = (H + 2 * Hkv) * hs;
    return { qOffset: 0, qRow: row, kOffset: H * hs, kRow: row, vOffset: (H + Hkv) * hs, vRow: row, headStride: hs };
  }
  const row = 3 * H * hs; // [H, 3, hs] per row
  return { qOffset: 0, qRow: row, kOffset: hs, kRow: row, vOffset: 2 * hs, vRow: row, headStride: 3 * hs };
}
