/**
 * Scaled dot-product attention over heads, with an additive bias carrying the causal/padding mask (and ALiBi).
 * Shapes: q [B, H, T, hs], k and v [B, Hkv, S, hs] (grouped heads are repeated as HF's repeat_kv does), bias broadcastable
 * to [B, H, T, S]. Returns [B, H, T, hs].
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { bmm } from './matmul.js';

/** A mask value that stays finite under addition (a fully masked row softmaxes to uniform, never NaN). */
export const MASKED = -1e9;

function repeatKv(x: Tensor, rep: number): Tensor {
  if (rep === 1) return x;
  const [B, Hkv, S, hs] = x.shape as [number, number, number, number];
  // Rank-3 tile (tfjs has no rank-5 tile gradient): each kv head is repeated for its `rep` query heads.
  return tf.reshape(tf.tile(tf.reshape(x, [B * Hkv, 1, S * hs]), [1, rep, 1]), [B, Hkv * rep, S, hs]);
}

export function attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number): Tensor {
  const [B, H, T, hs] = q.shape as [number, number, number, number];
  const rep = H / k.shape[1]!;
  const kr = repeatKv(k, rep);
  const vr = repeatKv(v, rep);
  const S = kr.shape[2]!;
  const q3 = tf.reshape(q, [B * H, T, hs]);
  const kT = tf.reshape(tf.transpose(kr, [0, 1, 3, 2]), [B * H, hs, S]);
  const scores = tf.add(tf.reshape(tf.mul(bmm(q3, kT), scale), [B, H, T, S]), bias); // (B, H, T, S)
  const probs = tf.softmax(scores, -1);
  const out = bmm(tf.reshape(probs, [B * H, T, S]), tf.reshape(vr, [B * H, S, hs])); // (B*H, T, hs)
  return tf.reshape(out, [B, H, T, hs]);
}

/**
 * Additive mask [B, 1, T, S] for T new queries after `past` cached positions: key j is visible to query i when
 * j ≤ past + i and attentionMask[b, j] = 1. `attentionMask` is [B, S] (0/1, S = past + T).
 */
export function causalMaskBias(attentionMask: Tensor, T: number): Tensor {
  return tf.tidy(() => {
    const [B, S] = attentionMask.shape as [number, number];
    const past = S - T;
    const qi = tf.reshape(tf.range(past, past + T, 1, 'int32'), [T, 1]);
    const kj = tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]);
    const causal = tf.lessEqual(kj, qi); // [T, S]
    const keep = tf.logicalAnd(tf.reshape(causal, [1, 1, T, S]), tf.reshape(tf.cast(attentionMask, 'bool'), [B, 1, 1, S]));
    return tf.where(keep, tf.zeros([B, 1, T, S]), tf.fill([B, 1, T, S], MASKED));
  });
}
