/**
 * AdamW's one-pass native kernel (native/engine/optimizer_kernels.cc, used by trainer/adamw.ts on the native
 * backend) against the tensor ops it replaces (RLHF_FUSED_KERNELS=0): the same parameters and moments to the bit over
 * several steps, with and without weight decay and a clipping scale; the kernel ran; nothing leaks.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { nativeBackendUnavailable } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { FUSED, FUSED_KERNELS_ENV } from '../src/engine/native_fused.js';
import { AdamW } from '../src/trainer/adamw.js';
import { seededValues } from './helpers/seeded_values.js';

const built = nativeBlasAvailable() && !nativeBackendUnavailable();

/** Three steps of AdamW on two parameters (one decayed, one not); the parameters and moments after them. */
function run(fused: boolean): { params: Float32Array[]; moments: Float32Array[] } {
  if (!fused) process.env[FUSED_KERNELS_ENV] = '0';
  try {
    const init = [tf.tensor2d(seededValues(300 * 70, 1), [300, 70]), tf.tensor1d(seededValues(70, 2))];
    const [w, b] = init.map((t) => tf.variable(t)) as [tf.Variable, tf.Variable];
    tf.dispose(init);
    const opt = new AdamW([['layer.weight', w], ['layer.bias', b]], { lr: 3e-3, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1, noDecay: (n) => n.endsWith('bias') });
    for (let step = 0; step < 3; step++) {
      const grads = { 'layer.weight': tf.tensor2d(seededValues(300 * 70, 10 + step, -3, 3), [300, 70]), 'layer.bias': tf.tensor1d(seededValues(70, 20 + step)) };
      opt.step(grads, 3e-3 * (1 - step / 10), step === 1 ? 0.37 : 1);
      tf.dispose(Object.values(grads));
    }
    const state = opt.stateDict();
    const out = { params: [w, b].map((p) => p.dataSync() as Float32Array), moments: [...state.tensors.values()].map((t) => t.data) };
    opt.dispose();
    w.dispose();
    b.dispose();
    return out;
  } finally {
    delete process.env[FUSED_KERNELS_ENV];
  }
}

describe.skipIf(!built)('AdamW on the native backend', () => {
  beforeAll(async () => {
    await initBackend('native', () => {});
  });
  afterEach(() => {
    delete process.env[FUSED_KERNELS_ENV];
  });

  it('the one-pass kernel gives the parameters and moments of the tensor ops, to the bit', () => {
    const want = run(false);
    const got = run(true);
    expect(got.moments.length).toBe(4);
    for (let i = 0; i < want.params.length; i++) expect(Array.from(got.params[i]!)).toEqual(Array.from(want.params[i]!));
    for (let i = 0; i < want.moments.length; i++) expect(Array.from(got.moments[i]!)).toEqual(Array.from(want.moments[i]!));
  });

  it('runs as one kernel per parameter and leaks nothing', async () => {
    const before = tf.memory().numTensors;
    const info = await tf.profile(() => {
      run(true);
      return tf.scalar(0);
    });
    (info.result as tf.Tensor).dispose();
    const names = info.kernels.map((k) => k.name);
    expect(names.filter((n) => n === FUSED.adamW).length).toBe(6); // 2 parameters × 3 steps
    expect(names).not.toContain('Sqrt');
    expect(tf.memory().numTensors).toBe(before);
  });
});
