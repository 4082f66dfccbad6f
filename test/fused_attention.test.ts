/**
 * The fused training attention (ops/attention.ts fusedSelfAttention, native/engine/train_attention.cc) against the
 * per-head product path it replaces (`attention` with the heads transposed in and out), on the native backend:
 * values and gradients within 1e-6 (relative) for each layout (separate, fused q|k|v, per-head q, k, v) and option
 * (grouped heads, left padding, sliding window, ALiBi-style bias, soft-capping, probability dropout); the kernels
 * ran; nothing leaks; and the fixture families' loss and gradients with it and with RLHF_FUSED_ATTENTION=0.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { tf, type Tensor } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { nativeBackendUnavailable } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { FUSED, FUSED_KERNELS_ENV } from '../src/engine/native_fused.js';
import {
  attention, causalBias, causalMaskBias, FUSED_ATTENTION_ENV, fusedSelfAttention, fusedSelfAttentionAvailable, type AttentionDropout,
} from '../src/models/ops/attention.js';
import { alibiBias } from '../src/models/ops/positions.js';
import { headLayout } from '../src/models/ops/decode_attention.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { ARCHS, fixtureDir, relErr } from './helpers/fixtures.js';
import { seededValues } from './helpers/seeded_values.js';

const built = nativeBlasAvailable() && !nativeBackendUnavailable();

type Kind = 'separate' | 'fused_concat' | 'fused_per_head';
interface Case {
  name: string;
  kind: Kind;
  B: number; T: number; H: number; Hkv: number; hs: number;
  bias: () => Tensor;
  softcap?: number;
  dropout?: AttentionDropout;
}

/** Left padding of row 1 by 3 positions (row 0 unpadded). */
function paddedMask(B: number, T: number): Tensor {
  return tf.tensor2d(Array.from({ length: B * T }, (_, i) => (Math.floor(i / T) === 1 && i % T < 3 ? 0 : 1)), [B, T], 'int32');
}

const cases: Case[] = [
  { name: 'fused q|k|v, causal (GPT-2)', kind: 'fused_concat', B: 3, T: 20, H: 4, Hkv: 4, hs: 8, bias: () => causalBias(20, 20) },
  { name: 'separate, grouped heads, left padding (Llama)', kind: 'separate', B: 2, T: 17, H: 6, Hkv: 3, hs: 16, bias: () => causalMaskBias(paddedMask(2, 17), 17) },
  { name: 'separate, sliding window 5, left padding (Mistral)', kind: 'separate', B: 2, T: 19, H: 4, Hkv: 2, hs: 32, bias: () => causalMaskBias(paddedMask(2, 19), 19, 5) },
  { name: 'per-head q, k, v, ALiBi bias per head (BLOOM)', kind: 'fused_per_head', B: 2, T: 13, H: 4, Hkv: 4, hs: 12,
    bias: () => tf.add(causalMaskBias(paddedMask(2, 13), 13), alibiBias(paddedMask(2, 13), 4)) },
  { name: 'soft-capped scores, window (Gemma 2)', kind: 'separate', B: 2, T: 18, H: 4, Hkv: 2, hs: 64, bias: () => causalMaskBias(paddedMask(2, 18), 18, 6), softcap: 5 },
  { name: 'head size 128, one kv head, left padding', kind: 'separate', B: 2, T: 21, H: 2, Hkv: 1, hs: 128, bias: () => causalMaskBias(paddedMask(2, 21), 21) },
  { name: 'head size 96 (three slices of 32), fused q|k|v with grouped heads', kind: 'fused_concat', B: 2, T: 11, H: 4, Hkv: 2, hs: 96, bias: () => causalBias(11, 11) },
  { name: 'head size 80 (five slices of 16), per-head q, k, v', kind: 'fused_per_head', B: 1, T: 24, H: 2, Hkv: 2, hs: 80, bias: () => causalBias(24, 24) },
  { name: 'dropout on the probabilities (nanoGPT)', kind: 'fused_concat', B: 2, T: 33, H: 2, Hkv: 2, hs: 32, bias: () => causalBias(33, 33), dropout: { rate: 0.2, seed: 7 } },
];

/** q, k, v [B, T, n·hs] (separate) or the one tensor the fused projection writes. */
function inputShapes(c: Case): number[][] {
  const { B, T, H, Hkv, hs } = c;
  if (c.kind === 'separate') return [[B, T, H * hs], [B, T, Hkv * hs], [B, T, Hkv * hs]];
  return [[B, T, (H + 2 * Hkv) * hs]];
}

/** The reference: q, k, v cut out of the inputs, heads transposed, `attention`, heads transposed back. */
function reference(c: Case, xs: Tensor[], bias: Tensor): Tensor {
  const { B, T, H, Hkv, hs } = c;
  const heads = (t: Tensor, n: number) => tf.transpose(tf.reshape(t, [B, T, n, hs]), [0, 2, 1, 3]);
  let q: Tensor, k: Tensor, v: Tensor;
  if (c.kind === 'separate') [q, k, v] = [heads(xs[0]!, H), heads(xs[1]!, Hkv), heads(xs[2]!, Hkv)];
  else if (c.kind === 'fused_concat') {
    const [a, b, d] = tf.split(xs[0]!, [H * hs, Hkv * hs, Hkv * hs], 2) as [Tensor, Tensor, Tensor];
    [q, k, v] = [heads(a, H), heads(b, Hkv), heads(d, Hkv)];
  } else {
    [q, k, v] = tf.split(tf.reshape(xs[0]!, [B, T, H, 3, hs]), 3, 3).map((t) => heads(t, H)) as [Tensor, Tensor, Tensor];
  }
  const y = attention(q, k, v, bias, 1 / Math.sqrt(hs), c.softcap ?? null, c.dropout ?? null);
  return tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, H * hs]);
}

function fused(c: Case, xs: Tensor[], bias: Tensor): Tensor {
  const ins = c.kind === 'separate' ? (xs as [Tensor, Tensor, Tensor]) : xs[0]!;
  return fusedSelfAttention(ins, headLayout(c.kind, c.H, c.Hkv, c.hs), { H: c.H, Hkv: c.Hkv, hs: c.hs }, bias, 1 / Math.sqrt(c.hs), c.softcap ?? null, c.dropout ?? null);
}

/** Output and the gradients of Σ out·r (r fixed) for each input, as arrays. */
function valueAndGrads(c: Case, f: (c: Case, xs: Tensor[], bias: Tensor) => Tensor): number[][] {
  return tf.tidy(() => {
    const xs = inputShapes(c).map((s, i) => tf.tensor(seededValues(s.reduce((a, b) => a * b, 1), i + 1, -2, 2), s));
    const bias = c.bias();
    const y = f(c, xs, bias);
    const r = tf.tensor(seededValues(y.size, 99), y.shape);
    const grads = tf.grads((...args: Tensor[]) => tf.sum(tf.mul(f(c, args, bias), r)))(xs);
    return [Array.from(y.dataSync()), ...grads.map((g) => Array.from(g.dataSync()))];
  });
}

describe.skipIf(!built)('fused training attention', () => {
  beforeAll(async () => {
    await initBackend('native', () => {});
  });
  afterEach(() => {
    delete process.env[FUSED_ATTENTION_ENV];
    delete process.env[FUSED_KERNELS_ENV];
  });

  it.each(cases)('$name: value and gradients match the per-head path', (c) => {
    const want = valueAndGrads(c, reference);
    const got = valueAndGrads(c, fused);
    expect(got.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(relErr(got[i]!, want[i]!), `output ${i}`).toBeLessThanOrEqual(1e-6);
  });

  it('runs as one kernel each way, without the per-head products, and leaks nothing', async () => {
    const c = cases[1]!;
    const before = tf.memory().numTensors;
    const info = await tf.profile(() => {
      valueAndGrads(c, fused);
      return tf.scalar(0);
    });
    (info.result as Tensor).dispose();
    const names = info.kernels.map((k) => k.name);
    expect(names).toContain(FUSED.trainAttention);
    expect(names).toContain(FUSED.trainAttentionGrad);
    expect(names).not.toContain('BatchMatMul');
    expect(names).not.toContain('Transpose');
    for (let i = 0; i < 3; i++) valueAndGrads(c, fused);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is switched off by RLHF_FUSED_ATTENTION=0 or RLHF_FUSED_KERNELS=0', () => {
    expect(fusedSelfAttentionAvailable()).toBe(true);
    process.env[FUSED_ATTENTION_ENV] = '0';
    expect(fusedSelfAttentionAvailable()).toBe(false);
    delete process.env[FUSED_ATTENTION_ENV];
    process.env[FUSED_KERNELS_ENV] = '0';
    expect(fusedSelfAttentionAvailable()).toBe(false);
  });

  /** Loss and every parameter's gradient of a left-padded batch, in training mode (dropout as configured). */
  function lossAndGrads(arch: (typeof ARCHS)[number], fusedOn: boolean): { loss: number; grads: Map<string, Float32Array>; ran: boolean } {
    if (!fusedOn) process.env[FUSED_ATTENTION_ENV] = '0';
    const { model } = loadPretrained(fixtureDir(arch));
    try {
      const ids = tf.tensor2d([[5, 9, 2, 7, 11, 4, 8, 3, 6], [1, 1, 1, 6, 3, 12, 10, 2, 9]], [2, 9], 'int32');
      const attentionMask = paddedMask(2, 9);
      const labels = tf.where(tf.cast(attentionMask, 'bool'), ids, tf.fill([2, 9], -100, 'int32'));
      const names: string[] = [];
      const vars: tf.Variable[] = [];
      for (const [n, v] of model.params) {
        names.push(n);
        vars.push(v);
      }
      let ran = false;
      const { value, grads } = tf.variableGrads(() => {
        const hidden = model.forward(ids, { attentionMask, training: true }).hidden;
        return model.lmLoss(hidden, labels) as tf.Scalar;
      }, vars);
      const out = new Map<string, Float32Array>();
      names.forEach((n, i) => out.set(n, grads[vars[i]!.name]!.dataSync() as Float32Array));
      const loss = value.dataSync()[0]!;
      ran = fusedOn && fusedSelfAttentionAvailable();
      tf.dispose([value, ...Object.values(grads), ids, attentionMask, labels]);
      return { loss, grads: out, ran };
    } finally {
      model.dispose();
      delete process.env[FUSED_ATTENTION_ENV];
    }
  }

  it.each(ARCHS)('%s: loss and gradients of a left-padded batch match RLHF_FUSED_ATTENTION=0', (arch) => {
    const want = lossAndGrads(arch, false);
    const got = lossAndGrads(arch, true);
    expect(got.ran).toBe(true);
    expect(Math.abs(got.loss - want.loss) / Math.abs(want.loss)).toBeLessThanOrEqual(1e-6);
    // Relative to the gradient, or to a thousandth of the largest one for gradients that are zero in exact arithmetic
    // (a k-projection bias moves every score of a row alike, which the softmax ignores).
    const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, x) => s + x * x, 0));
    const largest = Math.max(...[...want.grads.values()].map(norm));
    for (const [n, g] of want.grads) {
      const err = relErr(got.grads.get(n)!, g) * norm(g) / Math.max(norm(g), 1e-3 * largest);
      expect(err, n).toBeLessThanOrEqual(1e-6);
    }
  });
});
