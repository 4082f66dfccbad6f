/**
 * Parity with Hugging Face transformers on the fixture checkpoints: logits of a left-padded batch, loss, every
 * gradient, one AdamW step, greedy ids with and without the KV cache, and a PEFT LoRA adapter.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { causalLmLoss } from '../src/models/ops/loss.js';
import { generate } from '../src/models/generation.js';
import { headLogProbsAndEntropy } from '../src/models/ops/head_logprobs.js';
import { ARCHS, expectedJson, expectedTensors, fixtureDir, relErr } from './helpers/fixtures.js';
import { join } from 'node:path';
import { AdamW } from '../src/trainer/adamw.js';
import '@tensorflow/tfjs-backend-wasm';
import { installNativeMatmul, NATIVE_BLAS_ENV, nativeBlasAvailable, nativeBlasStatus } from '../src/engine/native_blas.js';
import { setFastTransposedProducts, setUnbatchedMatmul } from '../src/models/ops/matmul.js';
import { initBackend } from '../src/engine/backend.js';
import { nativeBackendUnavailable } from '../src/engine/native_backend.js';
import { TEST_BACKEND_ENV } from './helpers/test_backend.js';

/**
 * 'wasm+openblas': the wasm backend with its products through OpenBLAS (src/engine/native_blas.ts), when built;
 * 'native': the native backend (src/engine/native_backend.ts), when its addons are built. RLHF_TEST_BACKEND=<name>
 * runs one of them only.
 */
const blasBuilt = nativeBlasAvailable() && process.env[NATIVE_BLAS_ENV] !== '0';
const AVAILABLE = ['cpu', 'wasm', ...(blasBuilt ? ['wasm+openblas'] : []), ...(blasBuilt && !nativeBackendUnavailable() ? ['native'] : [])];
const BACKENDS = process.env[TEST_BACKEND_ENV] ? [process.env[TEST_BACKEND_ENV]] : AVAILABLE;

/** transformers 5's in-memory names where they differ from the checkpoint's (GPT-NeoX's head: embed_out on disk). */
const MEMORY_NAMES: Record<string, string> = { 'embed_out.weight': 'lm_head.weight' };

/** Logits at real (unpadded) positions only. */
function realPositions(logits: Float32Array, mask: Int32Array, T: number, V: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) for (let v = 0; v < V; v++) out.push(logits[i * V + v]!);
  void T;
  return out;
}

describe.each(BACKENDS.flatMap((b) => ARCHS.map((a) => [b, a] as const)))('%s backend: %s parity with transformers', (backend, arch) => {
  beforeAll(async () => {
    if (backend === 'native') {
      await initBackend('native', () => {}); // registration, self-test and product forms as the CLIs have them
      return;
    }
    await tf.setBackend(backend.split('+')[0]!);
    await tf.ready();
    if (backend === 'wasm+openblas') {
      // The last group: the kernels stay installed for the rest of this file only.
      expect(installNativeMatmul(), nativeBlasStatus()).toBe(true);
      setUnbatchedMatmul(false);
      setFastTransposedProducts(true);
    }
  });
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

  it('loss within 1e-5, gradients within 1e-4 (through the logits and through the chunked LM-head loss)', () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const row = tf.tensor2d(Array.from(ids.data.slice(0, T)), [1, T], 'int32');
    const vars = model.namedParameters();
    const viaLogits = tf.variableGrads(() => causalLmLoss(model.logits(model.forward(row).hidden), row) as tf.Scalar, vars.map(([, v]) => v));
    const viaHead = tf.variableGrads(() => model.lmLoss(model.forward(row).hidden, row) as tf.Scalar, vars.map(([, v]) => v));
    for (const { value, grads } of [viaLogits, viaHead]) {
      expect(Math.abs(value.dataSync()[0]! - ej.loss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(ej.loss)));
      for (const [name, v] of vars) {
        const want = exp.get(`grad.${name}`) ?? exp.get(`grad.${MEMORY_NAMES[name]}`);
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
    }
    tf.dispose([viaLogits.value, viaHead.value, ...Object.values(viaLogits.grads), ...Object.values(viaHead.grads)]);
    // One torch.optim.AdamW step from the reference gradients. (From ours, elements whose true gradient is zero —
    // a key bias, which softmax cancels — carry float noise whose sign Adam's first step turns into ±lr, so the
    // optimizer is checked on torch's gradients and the gradients are checked above.)
    const opt = new AdamW(vars, { lr: ej.adamw.lr, betas: ej.adamw.betas, eps: ej.adamw.eps, weightDecay: ej.adamw.weight_decay });
    const ref = (prefix: string, n: string) => (exp.get(`${prefix}.${n}`) ?? exp.get(`${prefix}.${MEMORY_NAMES[n]}`))!;
    const refGrads = new Map(vars.map(([n]) => [n, tf.tensor(ref('grad', n).data, ref('grad', n).shape)]));
    opt.step(refGrads);
    for (const t of refGrads.values()) t.dispose();
    for (const [name, v] of vars) {
      expect(relErr(v.dataSync(), ref('after_adamw', name).data), `after_adamw.${name}`).toBeLessThan(1e-5);
    }
    opt.dispose();
    model.dispose();
  });

  it("greedy ids equal transformers' with and without the KV cache (sliding windows included)", () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const { prompt_ids: prompt, output_ids: want } = ej.greedy;
    for (const useCache of [true, false]) {
      const out = generate(model, [prompt], null, { maxNewTokens: want.length - prompt.length, useCache, eosTokenId: null });
      expect(out.sequences[0], `useCache=${useCache}`).toEqual(want);
    }
    model.dispose();
  });

  it("PPO's chunked log-probs and entropy equal those of the logits, gradient included (Gemma 2: soft-capped)", () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const row = tf.tensor2d(Array.from(ids.data.slice(0, T)), [1, T], 'int32');
    const h = tf.tidy(() => tf.reshape(model.forward(row).hidden, [T, -1]));
    const targets = tf.tensor1d(Array.from(ids.data.slice(0, T)), 'int32');
    const W = model.lmHeadWeight();
    const chunked = (x: tf.Tensor) => headLogProbsAndEntropy(x, W, targets, 5, model.config.finalSoftcap);
    const viaLogits = (x: tf.Tensor) => {
      const z = tf.reshape(model.logits(tf.reshape(x, [1, T, -1])), [T, -1]);
      const logp = tf.logSoftmax(z);
      const picked = tf.sum(tf.mul(logp, tf.oneHot(targets, z.shape[1]!)), 1);
      return tf.stack([picked, tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), 1))], 1);
    };
    const weights = tf.randomUniform([T, 2], -1, 1, 'float32', 5);
    for (const [got, want] of [[chunked, viaLogits].map((f) => f(h)), [chunked, viaLogits].map((f) => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(f(x), weights)))(h))]) {
      expect(relErr(got!.dataSync(), want!.dataSync())).toBeLessThan(1e-5);
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
