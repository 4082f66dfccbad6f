/**
 * config.json of the newer families: rope frequencies per rope_type against transformers 5.18's
 * `ROPE_INIT_FUNCTIONS` (values computed there for a LlamaConfig with hidden 64, 2 heads, head_dim 32,
 * max_position_embeddings 64, and embedded here), both config forms (`rope_parameters` and `rope_theta` +
 * `rope_scaling`, GPT-NeoX's `rotary_pct`), the fields that must be refused by name, --from_config for each, and
 * tiny transformers checkpoints of what the hub fixtures leave out (yarn, dynamic and linear rope in a model, Qwen2's
 * use_sliding_window from max_window_layers on, Phi-3's partial rotary with a window; test/fixtures/rope_models).
 */
import { describe, it, expect } from 'vitest';
import { parseRope, ropeFrequencies } from '../src/models/ops/rope.js';
import { normalizeConfig } from '../src/models/config.js';
import { relErr } from './helpers/fixtures.js';
import { rawConfigFromSpec } from '../src/sft/from_config.js';
import { DecoderModel } from '../src/models/decoder.js';
import { tf } from '../src/engine/tf.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { FIXTURES } from './helpers/fixtures.js';

const HF: Record<string, { config: Record<string, unknown>; maxPosition: number; scaling: number; invFreq: number[] }> = {
  linear: {
    config: {"rope_scaling": {"rope_type": "linear", "factor": 2.5, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 0,
    scaling: 1.0,
    invFreq: [0.40000001, 0.22493653, 0.1264911, 0.071131177, 0.039999999, 0.022493651, 0.012649111, 0.0071131177, 0.0039999997, 0.0022493652, 0.0012649111, 0.00071131176, 0.00040000002, 0.00022493652, 0.00012649111, 7.1131173e-05],
  },
  dynamic_short: {
    config: {"rope_scaling": {"rope_type": "dynamic", "factor": 3.0, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 39,
    scaling: 1.0,
    invFreq: [1, 0.56234133, 0.31622776, 0.17782794, 0.1, 0.056234129, 0.031622779, 0.017782794, 0.0099999998, 0.0056234132, 0.0031622779, 0.0017782794, 0.001, 0.0005623413, 0.00031622779, 0.00017782794],
  },
  dynamic_long: {
    config: {"rope_scaling": {"rope_type": "dynamic", "factor": 3.0, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 99,
    scaling: 1.0,
    invFreq: [1, 0.52647382, 0.27717465, 0.14592521, 0.076825798, 0.040446769, 0.021294164, 0.011210821, 0.0059022033, 0.0031073552, 0.0016359412, 0.00086128019, 0.00045344143, 0.00023872504, 0.00012568249, 6.6168541e-05],
  },
  llama3: {
    config: {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16, "rope_theta": 500000.0}, "rope_theta": 500000.0},
    maxPosition: 0,
    scaling: 1.0,
    invFreq: [0.57605636, 0.070636466, 0.024240345, 0.010674638, 0.0047007538, 0.0020700551, 0.00091158313, 0.00040143076, 0.00017677668, 7.7846555e-05, 3.4281024e-05, 1.5096218e-05, 6.6478697e-06, 2.9274997e-06, 1.2891732e-06, 5.6770881e-07],
  },
  yarn: {
    config: {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 0,
    scaling: 1.138629436111989,
    invFreq: [1, 0.35146332, 0.079056941, 0.044456985, 0.025, 0.014058532, 0.0079056947, 0.0044456986, 0.0024999999, 0.0014058533, 0.00079056947, 0.00044456986, 0.00025000001, 0.00014058533, 7.9056947e-05, 4.4456985e-05],
  },
  yarn_mscale: {
    config: {"rope_scaling": {"rope_type": "yarn", "factor": 40.0, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707, "original_max_position_embeddings": 8, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 0,
    scaling: 1.0,
    invFreq: [1, 0.014058532, 0.0079056947, 0.0044456986, 0.0024999999, 0.0014058533, 0.00079056947, 0.00044456986, 0.00025000001, 0.00014058533, 7.9056947e-05, 4.4456985e-05, 2.4999999e-05, 1.4058533e-05, 7.9056945e-06, 4.4456983e-06],
  },
  yarn_notruncate: {
    config: {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "truncate": false, "beta_fast": 8, "beta_slow": 2, "rope_theta": 10000.0}, "rope_theta": 10000.0},
    maxPosition: 0,
    scaling: 1.138629436111989,
    invFreq: [1, 0.14058533, 0.079056941, 0.044456985, 0.025, 0.014058532, 0.0079056947, 0.0044456986, 0.0024999999, 0.0014058533, 0.00079056947, 0.00044456986, 0.00025000001, 0.00014058533, 7.9056947e-05, 4.4456985e-05],
  },
};

const llamaRaw = (extra: Record<string, unknown>) => ({
  model_type: 'llama', vocab_size: 10, hidden_size: 64, num_attention_heads: 2, head_dim: 32, num_hidden_layers: 1,
  intermediate_size: 8, max_position_embeddings: 64, ...extra,
});

describe('rope frequencies equal transformers modeling_rope_utils', () => {
  it.each(Object.keys(HF))('%s', (name) => {
    const c = HF[name]!;
    const spec = parseRope(c.config, 'config.json', 32, 64);
    const { invFreq, scaling } = ropeFrequencies(spec, c.maxPosition);
    expect(relErr(invFreq, c.invFreq)).toBeLessThan(1e-6);
    // element by element too: the smallest frequencies barely weigh in the norm
    invFreq.forEach((f, i) => expect(Math.abs(f - c.invFreq[i]!) / c.invFreq[i]!, `${name}[${i}]`).toBeLessThan(1e-6));
    expect(scaling).toBeCloseTo(c.scaling, 12);
  });

  it('dynamic NTK leaves the frequencies alone up to max_position_embeddings', () => {
    const spec = parseRope({ rope_scaling: { type: 'dynamic', factor: 3 } }, 'config.json', 32, 64);
    const plain = ropeFrequencies(parseRope({}, 'config.json', 32, 64)).invFreq;
    expect([...ropeFrequencies(spec, 63).invFreq]).toEqual([...plain]);
    expect(ropeFrequencies(spec, 64).invFreq[1]).toBeLessThan(plain[1]!);
  });
});

describe('both config forms', () => {
  it('rope_parameters (transformers 5) and rope_theta + rope_scaling (older files) give one model config', () => {
    const scaling = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 };
    const v5 = normalizeConfig(llamaRaw({ rope_parameters: { rope_type: 'llama3', rope_theta: 500000, ...scaling } }));
    const old = normalizeConfig(llamaRaw({ rope_theta: 500000, rope_scaling: { type: 'llama3', ...scaling } }));
    expect(old.rope).toEqual(v5.rope);
    expect(v5.rope).toMatchObject({ type: 'llama3', theta: 500000, dim: 32, factor: 8, originalMaxPositions: 16 });
  });

  it("GPT-NeoX: rotary_pct and rotary_emb_base, or rope_parameters' partial_rotary_factor and rope_theta", () => {
    const base = { model_type: 'gpt_neox', vocab_size: 10, hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 1, intermediate_size: 8 };
    const old = normalizeConfig({ ...base, rotary_pct: 0.5, rotary_emb_base: 20000 });
    const v5 = normalizeConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 20000, partial_rotary_factor: 0.5 } });
    expect(old.rope).toEqual(v5.rope);
    expect(old.rope).toMatchObject({ dim: 8, theta: 20000 });
    expect(normalizeConfig(base).rope).toMatchObject({ dim: 4, theta: 10000 }); // GPTNeoXConfig's defaults
  });

  it("Phi-3's top-level original_max_position_embeddings wins over the rope dict's, as in transformers", () => {
    const spec = parseRope({ original_max_position_embeddings: 32, rope_scaling: { type: 'yarn', factor: 2, original_max_position_embeddings: 16 } }, 'c', 32, 64);
    expect(spec.originalMaxPositions).toBe(32);
  });
});

describe('fields that are not implemented are refused by name', () => {
  it.each([
    [llamaRaw({ rope_scaling: { rope_type: 'longrope', long_factor: [1], short_factor: [1] } }), /"rope_scaling.rope_type" "longrope" is not supported/],
    [llamaRaw({ rope_parameters: { rope_type: 'linear', rope_theta: 1e4, factor: 2, beta_fast: 3 } }), /"rope_parameters.beta_fast" is not a setting of rope_type "linear"/],
    [llamaRaw({ rope_parameters: { rope_type: 'llama3', rope_theta: 1e4, factor: 2 } }), /rope_type "llama3" needs "rope_parameters.low_freq_factor"/],
    [llamaRaw({ sliding_window: 16 }), /"sliding_window": 16 is not implemented for model_type llama \(only: qwen2, qwen3, mistral, phi3, gemma2\)/],
    [llamaRaw({ attn_logit_softcapping: 30 }), /"attn_logit_softcapping": 30 is not implemented for model_type llama/],
    [llamaRaw({ partial_rotary_factor: 0.5 }), /"partial_rotary_factor": 0.5 is not implemented for model_type llama/],
    [{ ...llamaRaw({}), model_type: 'mistral', use_parallel_residual: true }, /"use_parallel_residual": true is not implemented for model_type mistral/],
    [{ ...llamaRaw({}), model_type: 'qwen2', layer_types: ['sliding_attention'] }, /"layer_types\[0\]" is sliding_attention but no sliding window is set/],
    [{ ...llamaRaw({}), model_type: 'qwen2', layer_types: ['chunked_attention'] }, /"layer_types\[0\]" "chunked_attention" is not supported/],
    [{ ...llamaRaw({}), model_type: 'gemma2', use_bidirectional_attention: true }, /"use_bidirectional_attention": true is not implemented for model_type gemma2/],
  ])('%#', (raw, message) => {
    expect(() => normalizeConfig(raw as Record<string, unknown>)).toThrow(message);
  });

  it('Qwen2 slides only with use_sliding_window, from layer max_window_layers on; Gemma 2 on even layers', () => {
    const qwen = { ...llamaRaw({}), model_type: 'qwen2', num_hidden_layers: 4, sliding_window: 8, max_window_layers: 2 };
    expect(normalizeConfig(qwen).layerWindows).toEqual([null, null, null, null]);
    expect(normalizeConfig({ ...qwen, use_sliding_window: true }).layerWindows).toEqual([null, null, 8, 8]);
    expect(normalizeConfig({ ...qwen, model_type: 'gemma2' }).layerWindows).toEqual([8, null, 8, null]);
    expect(normalizeConfig({ ...qwen, model_type: 'mistral' }).layerWindows).toEqual([8, 8, 8, 8]);
  });
});

describe('--from_config for the newer families', () => {
  it.each(['qwen2', 'qwen3', 'mistral', 'gpt_neox', 'phi3', 'gemma2'])('%s: its transformers defaults, shrunk, build a model that runs', async (family) => {
    await tf.setBackend('cpu');
    const heads = family === 'gemma2' || family === 'qwen3' ? ',head_dim=8' : '';
    const kv = family === 'gpt_neox' ? '' : ',num_key_value_heads=2';
    const spec = rawConfigFromSpec(`${family}:num_hidden_layers=2,hidden_size=32,intermediate_size=48,num_attention_heads=4${kv}${heads},vocab_size=50,max_position_embeddings=16`);
    const config = normalizeConfig(spec.raw, family);
    const model = DecoderModel.fromConfig(config, 1);
    const logits = tf.tidy(() => model.logits(model.forward(tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32')).hidden));
    expect(logits.shape).toEqual([1, 4, 50]);
    expect([...logits.dataSync()].every(Number.isFinite)).toBe(true);
    // Gemma's (1 + w) norms start at w = 0, the others' at 1
    const norm = model.params.get(family === 'gpt_neox' ? 'gpt_neox.final_layer_norm.weight' : 'model.norm.weight')!.dataSync()[0];
    expect(norm).toBe(family === 'gemma2' ? 0 : 1);
    logits.dispose();
    model.dispose();
  });
});

describe('rope types and windows in a model, against transformers (test/fixtures/rope_models)', () => {
  it.each(['llama_yarn', 'llama_dynamic', 'llama_linear', 'qwen2_sliding', 'phi3_partial_sliding'])('%s: logits within 1e-4, greedy ids equal with and without the cache', async (name) => {
    await tf.setBackend('cpu');
    const dir = join(FIXTURES, 'rope_models', name);
    const exp = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { input_ids: number[]; logits: number[]; greedy: number[] };
    const { model } = loadPretrained(dir);
    const logits = tf.tidy(() => model.logits(model.forward(tf.tensor2d([exp.input_ids], undefined, 'int32')).hidden));
    expect(relErr(logits.dataSync(), exp.logits)).toBeLessThan(1e-4);
    for (const useCache of [true, false]) {
      const out = generate(model, [exp.input_ids.slice(0, 6)], null, { maxNewTokens: exp.greedy.length - 6, eosTokenId: null, useCache });
      expect(out.sequences[0], `useCache=${useCache}`).toEqual(exp.greedy);
    }
    logits.dispose();
    model.dispose();
  });
});
