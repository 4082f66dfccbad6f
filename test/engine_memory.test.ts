import { describe, it, expect, beforeAll } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { causalLmLoss } from '../src/models/ops/loss.js';
import { Optimization } from '../src/trainer/optimization.js';
import { createStrategy } from '../src/strategies/strategy.js';
import { LoraAdapter } from '../src/models/lora.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { Rng } from '../src/engine/rng.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('memory discipline', () => {
  it('tf.memory().numTensors stays flat over 20 training steps', () => {
    const { model } = loadPretrained(fixtureDir('gpt2'));
    const opt = new Optimization(model.namedParameters(), {
      lr: 1e-3, weightDecay: 0.01, gradClip: 1, accumulationSteps: 2, warmupSteps: 2, totalSteps: 10, schedule: 'cosine',
    }, createStrategy('naive'));
    const rng = new Rng(1);
    const counts: number[] = [];
    let first = 0;
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const ids = tf.tensor2d(Array.from({ length: 2 * 16 }, () => rng.int(600)), [2, 16], 'int32');
      const { loss } = opt.backward(() => causalLmLoss(model.logits(model.forward(ids, { training: true }).hidden), ids) as tf.Scalar);
      ids.dispose();
      if (i === 0) first = loss;
      last = loss;
      if (opt.ready()) {
        opt.step();
        counts.push(tf.memory().numTensors);
      }
    }
    // After the optimizer state exists (first step), the count never grows.
    expect(counts.length).toBe(10);
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(Number.isFinite(last) && Number.isFinite(first)).toBe(true);
    opt.dispose();
    model.dispose();
  });
});

describe('LoRA', () => {
  it('merging the adapter gives the same logits as applying it', () => {
    const { model } = loadPretrained(fixtureDir('llama'));
    model.lora = LoraAdapter.create(model.spec, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, 3);
    // Non-zero B so the adapter changes something.
    for (const m of model.lora.modules.values()) m.B.assign(tf.randomNormal(m.B.shape, 0, 0.5, 'float32', 5));
    const ids = tf.tensor2d([[5, 9, 100, 7, 3, 2]], [1, 6], 'int32');
    const withAdapter = model.logits(model.forward(ids).hidden).dataSync();
    model.loraEnabled = false;
    const base = model.logits(model.forward(ids).hidden).dataSync();
    model.loraEnabled = true;
    expect(relErr(withAdapter, base)).toBeGreaterThan(1e-3);
    model.lora.mergeInto(model.params, model.spec);
    model.loraEnabled = false;
    const merged = model.logits(model.forward(ids).hidden).dataSync();
    expect(relErr(merged, withAdapter)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('names the module kinds when targets match nothing', () => {
    const { model } = loadPretrained(fixtureDir('gpt2'));
    expect(() => LoraAdapter.create(model.spec, { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'] })).toThrow(/match no projection.*c_attn/);
    model.dispose();
  });
});
