/**
 * GPT-2 without biases (`rlhf_bias: false`, nanoGPT's bias=False): no bias parameters at all, the same function as
 * a GPT-2 whose biases are zero, and a saved checkpoint that still has GPT-2's full tensor layout (zero biases) so
 * transformers' GPT2LMHeadModel loads it; loading refuses a non-zero bias under the switch.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { normalizeConfig } from '../src/models/config.js';
import { DecoderModel } from '../src/models/decoder.js';
import { loadPretrained, savePretrained } from '../src/models/pretrained.js';
import { readSafetensors, writeSafetensors } from '../src/hub/safetensors.js';
import { rawConfigFromSpec } from '../src/sft/from_config.js';
import { layerNorm } from '../src/models/ops/norms.js';
import { relErr } from './helpers/fixtures.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'gpt2-nobias-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const RAW = {
  model_type: 'gpt2', vocab_size: 13, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, n_inner: null,
  activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0,
  bos_token_id: 0, eos_token_id: 0, tie_word_embeddings: true, initializer_range: 0.2,
};

describe('GPT-2 with rlhf_bias: false', () => {
  const ids = () => tf.tensor2d([[1, 5, 2, 9, 3, 7]], undefined, 'int32');
  const hidden = (m: DecoderModel) => tf.tidy(() => m.forward(ids()).hidden.dataSync());

  it('has no bias parameters and computes what the biased GPT-2 computes with zero biases', () => {
    const free = DecoderModel.fromConfig(normalizeConfig({ ...RAW, rlhf_bias: false }), 4);
    const names = [...free.params.keys()];
    expect(names.filter((n) => n.endsWith('.bias'))).toEqual([]);
    expect(names).toContain('transformer.h.1.attn.c_attn.weight');
    const biased = DecoderModel.fromConfig(normalizeConfig(RAW), 4);
    expect(biased.params.has('transformer.ln_f.bias')).toBe(true);
    // The same seed draws the same weights (biases are zeros, drawn from no generator).
    expect(relErr(hidden(free), hidden(biased))).toBeLessThan(1e-6);
    free.dispose();
    biased.dispose();
  });

  it('saves zero biases in GPT-2\'s layout and loads back as the bias-free model', () => {
    const model = DecoderModel.fromConfig(normalizeConfig({ ...RAW, rlhf_bias: false }), 5);
    const dir = tmp();
    savePretrained(model, dir);
    const saved = readSafetensors(join(dir, 'model.safetensors')).tensors;
    for (const n of ['transformer.ln_f.bias', 'transformer.h.0.ln_1.bias', 'transformer.h.0.attn.c_attn.bias', 'transformer.h.1.mlp.c_proj.bias']) {
      expect(saved.has(n), n).toBe(true);
      expect(saved.get(n)!.data.every((x) => x === 0), n).toBe(true);
    }
    expect(saved.get('transformer.h.0.attn.c_attn.bias')!.shape).toEqual([48]);
    const back = loadPretrained(dir).model;
    expect(back.config.raw.rlhf_bias).toBe(false);
    expect([...back.params.keys()].some((n) => n.endsWith('.bias'))).toBe(false);
    expect(relErr(hidden(back), hidden(model))).toBe(0);
    back.dispose();

    // A non-zero bias would be dropped silently by a bias-free model: refused, naming the tensor.
    const tensors = new Map([...saved].map(([n, t]) => [n, { shape: t.shape, data: Float32Array.from(t.data), dtype: 'F32' as const }]));
    tensors.get('transformer.h.1.ln_2.bias')!.data[3] = 0.5;
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    expect(() => loadPretrained(dir)).toThrow(/transformer\.h\.1\.ln_2\.bias is not zero.*"rlhf_bias": false/);
    model.dispose();
  });

  it('LayerNorm without a bias: value and gradients equal the plain formula (tfjs differentiates it)', () => {
    tf.tidy(() => {
      const x = tf.randomNormal([3, 4, 10], 0, 2, 'float32', 1);
      const w = tf.randomNormal([10], 0, 1, 'float32', 2);
      const probe = tf.randomNormal([3, 4, 10], 0, 1, 'float32', 3);
      const plain = (t: tf.Tensor, ww: tf.Tensor) => {
        const c = tf.sub(t, tf.mean(t, -1, true));
        return tf.mul(tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), -1, true), 1e-5))), ww);
      };
      const fused = (t: tf.Tensor, ww: tf.Tensor) => layerNorm(t, ww, null, 1e-5);
      expect(relErr(fused(x, w).dataSync(), plain(x, w).dataSync())).toBeLessThan(1e-6);
      const g = tf.grads((t: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(fused(t, ww), probe)))([x, w]);
      const want = tf.grads((t: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(plain(t, ww), probe)))([x, w]);
      g.forEach((t, i) => expect(relErr(t.dataSync(), want[i]!.dataSync()), `grad ${i}`).toBeLessThan(1e-5));
    });
  });

  it('is a --from_config key; a non-boolean value is an error naming the key', () => {
    expect(rawConfigFromSpec('gpt2:n_layer=2,rlhf_bias=false').raw.rlhf_bias).toBe(false);
    expect(() => normalizeConfig({ ...RAW, rlhf_bias: 'no' }, 'x/config.json')).toThrow(/x\/config.json: "rlhf_bias" must be true or false/);
    expect(() => normalizeConfig({ ...RAW, model_type: 'opt', rlhf_bias: false })).toThrow(/rlhf_bias.*not implemented for model_type opt/);
  });
});
