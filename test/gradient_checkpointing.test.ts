/**
 * Activation recompute (`gradientCheckpointing`): the same loss and gradients as the plain forward on the fixture
 * models of every family (full weights with dropout on, LoRA with its dropout, prefix and prompt tuning), and a
 * lower tensor-memory peak during a training step.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { join } from 'node:path';
import { tf, type Tensor } from '../src/engine/tf.js';
import { DecoderModel } from '../src/models/decoder.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { normalizeConfig } from '../src/models/config.js';
import { LoraAdapter } from '../src/models/lora.js';
import { causalLmLossWithAdapter } from '../src/models/virtual_tokens.js';
import { ARCHS, fixtureDir, relErr } from './helpers/fixtures.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const TOL = 1e-6;

/** Loss and gradients of one training forward, with dropout seeded the same way each time. */
function lossAndGrads(model: DecoderModel, ids: Tensor, vars: tf.Variable[], checkpointing: boolean): { loss: number; grads: Float32Array[] } {
  model.gradientCheckpointing = checkpointing;
  model.setDropoutSeed(11);
  model.lora?.setDropoutSeed(12);
  const { value, grads } = tf.variableGrads(() => causalLmLossWithAdapter(model, ids, ids, { training: true }) as tf.Scalar, vars);
  const out = { loss: value.dataSync()[0]!, grads: vars.map((v) => grads[v.name]!.dataSync() as Float32Array) };
  value.dispose();
  tf.dispose(Object.values(grads));
  return out;
}

function expectSame(model: DecoderModel, vars: tf.Variable[]): void {
  const ids = tf.tensor2d([[1, 5, 9, 3, 7, 2, 8, 4], [6, 2, 2, 9, 1, 3, 5, 7]], [2, 8], 'int32');
  const plain = lossAndGrads(model, ids, vars, false);
  const before = tf.memory().numTensors;
  const recomputed = lossAndGrads(model, ids, vars, true);
  expect(tf.memory().numTensors).toBe(before); // the recompute leaks nothing
  ids.dispose();
  expect(Math.abs(recomputed.loss - plain.loss) / Math.abs(plain.loss)).toBeLessThan(TOL);
  let norm = 0;
  vars.forEach((v, i) => {
    norm += Math.hypot(...plain.grads[i]!.slice(0, 64));
    expect(relErr(recomputed.grads[i]!, plain.grads[i]!), v.name).toBeLessThan(TOL);
  });
  expect(norm).toBeGreaterThan(0); // gradients that are all zero would compare equal trivially
}

/** Dropout on everywhere the family has it, so the recompute must replay the same masks. */
function withDropout(model: DecoderModel): DecoderModel {
  Object.assign(model.config, { residDropout: 0.1, embdDropout: 0.1, attnDropout: 0.1 });
  return model;
}

describe.each(ARCHS)('%s: gradient checkpointing', (arch) => {
  it('full weights with dropout: same loss and gradients', () => {
    const { model } = loadPretrained(fixtureDir(arch));
    withDropout(model);
    expectSame(model, model.namedParameters().map(([, v]) => v));
    model.dispose();
  });
});

describe('gradient checkpointing on wasm', () => {
  it.each(['gpt2', 'qwen2'] as const)('%s: full weights with dropout', async (arch) => {
    await tf.setBackend('wasm');
    try {
      const { model } = loadPretrained(fixtureDir(arch));
      withDropout(model);
      expectSame(model, model.namedParameters().map(([, v]) => v));
      model.dispose();
    } finally {
      await tf.setBackend('cpu');
    }
  });
});

describe('gradient checkpointing with adapters', () => {
  it.each(['gpt2', 'llama', 'gpt_neox'] as const)('%s: LoRA with dropout', (arch) => {
    const { model } = loadPretrained(fixtureDir(arch));
    withDropout(model);
    model.lora = LoraAdapter.create(model.spec, { r: 4, alpha: 8, dropout: 0.2, targetModules: 'all-linear' }, 3);
    // B starts at zero (PEFT's init), which would leave A's gradient zero: give B values.
    for (const { B } of model.lora.modules.values()) B.assign(tf.randomNormal(B.shape, 0, 0.1, 'float32', 5));
    expectSame(model, model.lora.trainableVariables());
    model.dispose();
  });

  it.each(['prefix', 'prompt'])('gpt2: %s tuning', (kind) => {
    const { model } = loadPretrained(fixtureDir('gpt2'), { adapter: join(fixtureDir('gpt2'), kind), promptLearning: true });
    expectSame(model, model.virtualTokens!.trainableVariables());
    model.dispose();
  });
});

describe('gradient checkpointing memory', () => {
  it('the tensor-memory peak of a training step is under 0.7 of the plain one', async () => {
    const config = normalizeConfig({
      model_type: 'gpt2', vocab_size: 128, n_positions: 256, n_embd: 64, n_layer: 8, n_head: 4, n_inner: 256,
      resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0,
    });
    const model = DecoderModel.fromConfig(config, 0);
    const ids = tf.randomUniform([2, 64], 0, 128, 'int32', 1);
    const vars = model.namedParameters().map(([, v]) => v);
    const peak = async (on: boolean) => {
      model.gradientCheckpointing = on;
      const start = tf.memory().numBytes;
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => model.lmLoss(model.forward(ids, { training: true }).hidden, ids) as tf.Scalar, vars);
        value.dispose();
        tf.dispose(Object.values(grads));
      });
      return info.peakBytes - start;
    };
    const plain = await peak(false);
    const recomputed = await peak(true);
    expect(recomputed / plain).toBeLessThan(0.7);
    ids.dispose();
    model.dispose();
  });
});

describe('--gradient_checkpointing', () => {
  it('every training command takes it, and models created afterwards recompute', async () => {
    const { buildSftCommand } = await import('../src/cli/train_sft.js');
    const { setGradientCheckpointingDefault } = await import('../src/models/decoder.js');
    const config = normalizeConfig({ model_type: 'gpt2', vocab_size: 16, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 });
    const fresh = () => {
      const m = DecoderModel.fromConfig(config, 0);
      const on = m.gradientCheckpointing;
      m.dispose();
      return on;
    };
    expect(fresh()).toBe(false);
    const o = buildSftCommand().exitOverride().parse(['--pretrain', 'x', '--dataset', 'y', '--save_path', 'z', '--gradient_checkpointing'], { from: 'user' }).opts();
    expect(o.gradient_checkpointing).toBe(true);
    expect(fresh()).toBe(true);
    buildSftCommand().exitOverride().parse(['--pretrain', 'x', '--dataset', 'y', '--save_path', 'z', '--gradient_checkpointing', 'false'], { from: 'user' });
    expect(fresh()).toBe(false);
    setGradientCheckpointingDefault(false);
    const commands = await Promise.all([
      import('../src/cli/train_reward_model.js').then((m) => m.buildRewardCommand()),
      import('../src/cli/train_prompts.js').then((m) => m.buildPromptsCommand()),
      import('../src/cli/train_dpo.js').then((m) => m.buildDpoCommand()),
      import('../src/cli/train_grpo.js').then((m) => m.buildGrpoCommand()),
    ]);
    for (const c of commands) expect(c.options.map((x) => x.long), c.name()).toContain('--gradient_checkpointing');
  });
});
