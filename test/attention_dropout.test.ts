/**
 * Attention-probability dropout (GPT-2's attn_pdrop, nanoGPT's attn_dropout): rate 0 is the plain attention, a rate
 * gives out = (softmax(·) ⊙ M)·v with a seeded inverted mask M, and the custom gradient equals tfjs's own gradient of
 * that masked reference. In the decoder it acts in training mode only, seeded by the model's dropout seed.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf, type Tensor } from '../src/engine/tf.js';
import { attention, attentionDropoutMask, causalMaskBias } from '../src/models/ops/attention.js';
import { installKernelOverrides } from '../src/models/ops/kernel_overrides.js';
import { setUnbatchedMatmul } from '../src/models/ops/matmul.js';
import { normalizeConfig } from '../src/models/config.js';
import { DecoderModel } from '../src/models/decoder.js';
import { relErr } from './helpers/fixtures.js';

let seed = 1;
const rand = (shape: number[]) => tf.randomNormal(shape, 0, 1, 'float32', seed++);

/** Value and gradients of sum(f(xs)·probe) for a fixed random probe. */
function valueAndGrads(f: (...xs: Tensor[]) => Tensor, xs: Tensor[]): { value: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const out = f(...xs);
    const probe = tf.randomNormal(out.shape, 0, 1, 'float32', 99);
    const g = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(f(...a), probe)))(xs);
    return { value: out.dataSync() as Float32Array, grads: g.map((t) => t.dataSync() as Float32Array) };
  });
}

/** Plain-op attention with an explicit probability mask (tfjs differentiates it). */
function maskedReference(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: number, mask: Tensor | null): Tensor {
  const p = tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), bias), -1);
  return tf.matMul(mask ? tf.mul(p, mask) : p, v);
}

describe.each(['cpu', 'wasm'] as const)('attention dropout (%s)', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
    installKernelOverrides();
    setUnbatchedMatmul(true);
  });

  const [B, H, T, hs] = [2, 3, 20, 8];
  const scale = 1 / Math.sqrt(hs);

  it('rate 0 is the attention without dropout, values and gradients', () => {
    const [q, k, v] = [rand([B, H, T, hs]), rand([B, H, T, hs]), rand([B, H, T, hs])];
    const bias = causalMaskBias(tf.ones([B, T], 'int32'), T);
    const plain = valueAndGrads((a, b, c) => attention(a, b, c, bias, scale), [q, k, v]);
    const zero = valueAndGrads((a, b, c) => attention(a, b, c, bias, scale, null, { rate: 0, seed: 5 }), [q, k, v]);
    expect(relErr(zero.value, plain.value)).toBe(0);
    zero.grads.forEach((g, i) => expect(relErr(g, plain.grads[i]!), `grad ${i}`).toBe(0));
    tf.dispose([q, k, v, bias]);
  });

  it.each([true, false])('with a rate: values and q/k/v gradients equal the masked reference (head loop %s)', (loop) => {
    const [q, k, v] = [rand([B, H, T, hs]), rand([B, H, T, hs]), rand([B, H, T, hs])];
    const bias = causalMaskBias(tf.ones([B, T], 'int32'), T);
    const drop = { rate: 0.3, seed: 42 };
    setUnbatchedMatmul(loop);
    try {
      const mask = tf.tidy(() => attentionDropoutMask(tf.zeros([B, H, T, T]), drop));
      const got = valueAndGrads((a, b, c) => attention(a, b, c, bias, scale, null, drop), [q, k, v]);
      const want = valueAndGrads((a, b, c) => maskedReference(a, b, c, bias, scale, mask), [q, k, v]);
      const undropped = valueAndGrads((a, b, c) => maskedReference(a, b, c, bias, scale, null), [q, k, v]);
      expect(relErr(got.value, want.value)).toBeLessThan(1e-5);
      got.grads.forEach((g, i) => expect(relErr(g, want.grads[i]!), `grad ${i}`).toBeLessThan(1e-5));
      expect(relErr(got.value, undropped.value)).toBeGreaterThan(0.1); // the mask did something
      tf.dispose([mask]);
    } finally {
      setUnbatchedMatmul(true);
    }
    tf.dispose([q, k, v, bias]);
  });

  it('the mask is reproducible by seed, drops about `rate` of the entries and keeps the expectation', () => {
    const shape = [4, 4, 64, 64];
    const rate = 0.2;
    tf.tidy(() => {
      const a = attentionDropoutMask(tf.zeros(shape), { rate, seed: 7 }).dataSync();
      const b = attentionDropoutMask(tf.zeros(shape), { rate, seed: 7 }).dataSync();
      const c = attentionDropoutMask(tf.zeros(shape), { rate, seed: 8 }).dataSync();
      expect(relErr(a, b)).toBe(0);
      expect(relErr(a, c)).toBeGreaterThan(0.1);
      let dropped = 0;
      let sum = 0;
      for (const x of a) {
        if (x === 0) dropped += 1;
        else expect(x).toBeCloseTo(1 / (1 - rate), 5);
        sum += x;
      }
      // 65,536 Bernoulli(0.2) draws: the share's standard deviation is 0.0016, so 0.01 is six of them.
      expect(Math.abs(dropped / a.length - rate)).toBeLessThan(0.01);
      expect(Math.abs(sum / a.length - 1)).toBeLessThan(0.015);
    });
  });

  it('a rate of 1 or more is refused', () => {
    const x = rand([1, 1, 4, 2]);
    const bias = causalMaskBias(tf.ones([1, 4], 'int32'), 4);
    expect(() => attention(x, x, x, bias, 1, null, { rate: 1, seed: 1 })).toThrow(/rate must be in \[0, 1\)/);
    tf.dispose([x, bias]);
  });

  it('in the decoder: training mode only, seeded by the dropout seed, gradients through it', () => {
    const raw = {
      model_type: 'gpt2', vocab_size: 11, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, n_inner: null,
      activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0.5,
      bos_token_id: 0, eos_token_id: 0, tie_word_embeddings: true, initializer_range: 0.2,
    };
    const model = DecoderModel.fromConfig(normalizeConfig(raw, 'toy'), 3);
    const noDrop = DecoderModel.fromConfig(normalizeConfig({ ...raw, attn_pdrop: 0 }, 'toy'), 3);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]], undefined, 'int32');
    const run = (m: DecoderModel, training: boolean, s: number) => tf.tidy(() => {
      m.setDropoutSeed(s);
      return m.forward(ids, { training }).hidden.dataSync();
    });
    const evalOut = run(model, false, 1);
    expect(relErr(evalOut, run(noDrop, true, 1))).toBe(0); // eval mode, and rate 0 in training, drop nothing
    const trained = run(model, true, 1);
    expect(relErr(trained, evalOut)).toBeGreaterThan(0.01);
    expect(relErr(run(model, true, 1), trained)).toBe(0);
    expect(relErr(run(model, true, 2), trained)).toBeGreaterThan(0.01);
    // The loss gradient reaches every layer's q/k/v weights through the masked probabilities.
    const grads = tf.tidy(() => {
      model.setDropoutSeed(1);
      const w = [...model.params.entries()].filter(([n]) => n.endsWith('attn.c_attn.weight'));
      const { grads: g } = tf.variableGrads(() => tf.sum(tf.square(model.forward(ids, { training: true }).hidden)) as tf.Scalar, w.map(([, v]) => v));
      return w.map(([, v]) => tf.norm(g[v.name]!).dataSync()[0]!);
    });
    expect(grads).toHaveLength(2);
    for (const g of grads) expect(g).toBeGreaterThan(0);
    tf.dispose(ids);
    model.dispose();
    noDrop.dispose();
  });
});
