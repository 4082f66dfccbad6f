/**
 * The native backend's fused kernels (native/engine/fused_kernels.cc, src/engine/native_fused.ts) through the ops
 * that choose them (norms, activations, the LM-head cross-entropy): values and gradients on native against the
 * same ops on the cpu backend, where they run as their tfjs decompositions. Also: the fused kernels are the ones
 * that ran, bad input is refused with a message, and RLHF_FUSED_KERNELS=0 switches them off.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { tf, type Tensor } from '../src/engine/tf.js';
import { nativeBackendUnavailable, registerNativeBackend } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { FUSED, FUSED_KERNELS_ENV, fusedKernel } from '../src/engine/native_fused.js';
import { layerNorm, rmsNorm } from '../src/models/ops/norms.js';
import { activate, gatedActivate } from '../src/models/ops/activations.js';
import { lmHeadCrossEntropy } from '../src/models/ops/lm_head_loss.js';
import { headLogProbsAndEntropy } from '../src/models/ops/head_logprobs.js';
import { packWeight } from '../src/models/ops/packed_weight.js';
import { IGNORE_INDEX } from '../src/models/ops/loss.js';
import { attention, causalBias, causalMaskBias } from '../src/models/ops/attention.js';
import { applyRotary, rotaryTables } from '../src/models/ops/positions.js';
import { dropoutMask } from '../src/models/ops/dropout_mask.js';
import { relErr } from './helpers/fixtures.js';
import { seededValues as values } from './helpers/seeded_values.js';

const why = nativeBackendUnavailable() || (nativeBlasAvailable() ? '' : 'the OpenBLAS addon (native/blas) is not built');
describe.runIf(why !== '')('native fused kernels', () => {
  it.skip(`skipped: ${why} (npm run build:engine)`, () => {});
});

type Inputs = { shape: number[]; lo?: number; hi?: number }[];

/** The op's value and its gradients (of Σ out·r for a fixed random r) on one backend, as plain arrays. */
async function valueAndGrads(backend: string, f: (...xs: Tensor[]) => Tensor, inputs: Inputs): Promise<number[][]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((s, i) => tf.tensor(values(s.shape.reduce((a, b) => a * b, 1), i + 1, s.lo, s.hi), s.shape));
    const y = f(...xs);
    const r = tf.tensor(values(y.size, 99), y.shape);
    const grads = tf.grads((...args: Tensor[]) => tf.sum(tf.mul(f(...args), r)))(xs);
    return [Array.from(y.dataSync()), ...grads.map((g) => Array.from(g.dataSync()))];
  });
}

async function expectFusedMatches(f: (...xs: Tensor[]) => Tensor, inputs: Inputs, tol = 1e-6): Promise<void> {
  const ref = await valueAndGrads('cpu', f, inputs);
  const got = await valueAndGrads('native', f, inputs);
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    expect(got[i]!.length).toBe(ref[i]!.length);
    expect(relErr(got[i]!, ref[i]!)).toBeLessThanOrEqual(tol);
  }
}

/** Kernel names that ran for f on native. */
async function kernelsRun(f: () => Tensor): Promise<string[]> {
  await tf.setBackend('native');
  const info = await tf.profile(() => f());
  if (info.result instanceof tf.Tensor) info.result.dispose();
  return info.kernels.map((k) => k.name);
}

describe.runIf(why === '')('native fused kernels against the cpu decompositions', () => {
  beforeAll(() => {
    registerNativeBackend(2);
  });
  afterEach(() => {
    delete process.env[FUSED_KERNELS_ENV];
  });

  // Widths: odd, below and above the 8-lane blocks; row counts large enough to run on both threads.
  const shapes = [[3, 7], [2, 5, 33], [300, 192]];

  it.each(shapes)('RMSNorm [%s, …]: value and gradients', async (...shape: number[]) => {
    await expectFusedMatches((x, w) => rmsNorm(x!, w!, 1e-6), [{ shape }, { shape: [shape.at(-1)!], lo: 0.5, hi: 1.5 }]);
  });

  it.each(shapes)('LayerNorm [%s, …] with and without bias: value and gradients', async (...shape: number[]) => {
    const C = shape.at(-1)!;
    await expectFusedMatches((x, w, b) => layerNorm(x!, w!, b!, 1e-5), [{ shape, lo: -2, hi: 3 }, { shape: [C], lo: 0.5, hi: 1.5 }, { shape: [C] }]);
    await expectFusedMatches((x, w) => layerNorm(x!, w!, null, 1e-5), [{ shape, lo: -2, hi: 3 }, { shape: [C], lo: 0.5, hi: 1.5 }]);
  });

  it.each(['silu', 'gelu_new', 'gelu', 'relu'] as const)('%s and the gated form: value and gradients', async (kind) => {
    for (const shape of [[5], [4, 129], [70, 1030]]) {
      await expectFusedMatches((x) => activate(x!, kind), [{ shape, lo: -8, hi: 8 }]);
      await expectFusedMatches((g, u) => gatedActivate(g!, u!, kind), [{ shape, lo: -8, hi: 8 }, { shape }]);
    }
  });

  it('LM-head cross-entropy: loss and gradients, ignored labels, several row chunks and vocabulary pieces', async () => {
    const [N, C, V] = [37, 24, 5000];
    const labels = Int32Array.from({ length: N }, (_, i) => (i % 5 === 3 ? IGNORE_INDEX : (i * 7919) % V));
    const f = (h: Tensor, w: Tensor) => {
      const lb = tf.tensor1d(labels, 'int32');
      return lmHeadCrossEntropy(h, w, lb, 16);
    };
    await expectFusedMatches((h, w) => f(h!, w!), [{ shape: [N, C], lo: -3, hi: 3 }, { shape: [V, C] }]);
    // The loss as the whole objective (dy = 1): the gradients saved in the forward pass are returned as they are.
    const plainGrads = async (backend: string) => {
      await tf.setBackend(backend);
      return tf.tidy(() => {
        const h = tf.tensor(values(N * C, 1, -3, 3), [N, C]);
        const w = tf.tensor(values(V * C, 2), [V, C]);
        return tf.grads((a: Tensor, b: Tensor) => f(a, b))([h, w]).map((g) => Array.from(g.dataSync()));
      });
    };
    const [ref, got] = [await plainGrads('cpu'), await plainGrads('native')];
    for (let i = 0; i < 2; i++) expect(relErr(got[i]!, ref[i]!)).toBeLessThanOrEqual(1e-6);
    await tf.setBackend('native');
    const before = tf.memory().numTensors;
    tf.dispose(tf.tidy(() => tf.grads((a: Tensor, b: Tensor) => f(a, b))([tf.ones([N, C]), tf.ones([V, C])])));
    expect(tf.memory().numTensors).toBe(before);
  });

  it.each([
    ['causal bias [1, 1, T, S], grouped heads', 6, 3, false],
    ['padding and causal bias [B, 1, T, S]', 4, 4, true],
  ] as const)('attention with %s: value and gradients of q, k, v', async (_, H, G, padded) => {
    const [B, T, hs] = [2, 9, 8];
    const f = (q: Tensor, k: Tensor, v: Tensor) => {
      const bias = padded ? causalMaskBias(tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1, 1]], undefined, 'int32'), T) : causalBias(T, T);
      return attention(q, k, v, bias, 1 / Math.sqrt(hs));
    };
    await expectFusedMatches((q, k, v) => f(q!, k!, v!), [{ shape: [B, H, T, hs], lo: -2, hi: 2 }, { shape: [B, G, T, hs], lo: -2, hi: 2 }, { shape: [B, G, T, hs] }]);
  });

  it.each([[1, 16, 16], [2, 16, 16], [2, 16, 10]])('rotary embedding, tables for %s rows, hs %s, rotated dims %s: value and gradient', async (tb, hs, d) => {
    const [B, H, T] = [2, 3, 5];
    const invFreq = Array.from({ length: d / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / d));
    const f = (x: Tensor) => {
      const ids = tf.tensor2d(Array.from({ length: tb }, (_, b) => Array.from({ length: T }, (_, t) => t + 3 * b)), undefined, 'int32');
      const { cos, sin } = rotaryTables(ids, invFreq);
      return applyRotary(x, cos, sin);
    };
    await expectFusedMatches((x) => f(x!), [{ shape: [B, H, T, hs], lo: -2, hi: 2 }]);
  });

  it('head log-probs and entropy: values and gradients of h and the head, a frozen head, several row chunks', async () => {
    const [N, C, V] = [37, 24, 5000];
    const targets = Int32Array.from({ length: N }, (_, i) => (i * 7919) % V);
    const f = (h: Tensor, w: Tensor) => headLogProbsAndEntropy(h, w, tf.tensor1d(targets, 'int32'), 16);
    // dh = dz·W sums 5,000 terms that cancel (dz sums to ~0 over the vocabulary): against float64, OpenBLAS's float32
    // sums are 1.3e-6 off, the cpu product (which accumulates in double) 3.6e-7; the kernel's own values are 1e-7.
    await expectFusedMatches((h, w) => f(h!, w!), [{ shape: [N, C], lo: -3, hi: 3 }, { shape: [V, C] }], 3e-6);
    // Only the log-prob column carrying a gradient (PPO's policy loss), and a frozen head (dh only).
    await expectFusedMatches((h, w) => tf.slice(f(h!, w!), [0, 0], [N, 1]), [{ shape: [N, C], lo: -3, hi: 3 }, { shape: [V, C] }], 3e-6);
    // A frozen head is a model's weight, kept across the forward and backward passes (not a tensor of the taped call).
    const kept = new Map<string, Tensor>();
    const w = () => {
      if (!kept.has(tf.getBackend())) kept.set(tf.getBackend(), tf.keep(tf.tensor(values(V * C, 5), [V, C])));
      return kept.get(tf.getBackend())!;
    };
    await expectFusedMatches((h) => headLogProbsAndEntropy(h!, w(), tf.tensor1d(targets, 'int32'), 16, null, true), [{ shape: [N, C], lo: -3, hi: 3 }], 3e-6);
    // A packed frozen head (int8): its own product, the same stats kernel.
    const packedOn = new Map<string, ReturnType<typeof packWeight>>(); // one per backend, as a loaded model holds it
    const packed = () => {
      if (!packedOn.has(tf.getBackend())) packedOn.set(tf.getBackend(), packWeight(Float32Array.from(values(V * C, 5)), [V, C], 'int8'));
      return packedOn.get(tf.getBackend())!;
    };
    await expectFusedMatches((h) => headLogProbsAndEntropy(h!, packed(), tf.tensor1d(targets, 'int32'), 16, null, true), [{ shape: [N, C], lo: -3, hi: 3 }], 3e-6);
    await tf.setBackend('native');
    const ran = await kernelsRun(() => headLogProbsAndEntropy(tf.tensor(values(N * C, 1), [N, C]), w(), tf.tensor1d(targets, 'int32'), 16));
    expect(ran).toContain(FUSED.logProbEntropyRows);
    expect(ran).not.toContain('Softmax');
    expect(ran).not.toContain('Transpose');
    tf.dispose([...kept.values()]);
  });

  it('dropout masks equal tf.dropout on ones, element for element, on native and on cpu', async () => {
    for (const [shape, rate, seed] of [[[7], 0.5, 1], [[3, 129], 0.1, 123456789], [[12, 4, 64, 64], 0.2, 2147483646], [[1000], 0.9, 42]] as const) {
      await tf.setBackend('native');
      const fused = tf.tidy(() => Array.from(dropoutMask([...shape], rate, seed).dataSync()));
      expect(await kernelsRun(() => dropoutMask([...shape], rate, seed))).toContain(FUSED.dropoutMask);
      const ref = tf.tidy(() => Array.from(tf.dropout(tf.ones([...shape]), rate, undefined, seed).dataSync()));
      await tf.setBackend('cpu');
      const cpu = tf.tidy(() => Array.from(tf.dropout(tf.ones([...shape]), rate, undefined, seed).dataSync()));
      expect(fused).toEqual(ref);
      expect(fused).toEqual(cpu);
      const kept = fused.filter((v) => v !== 0).length / fused.length;
      if (fused.length >= 1000) expect(Math.abs(kept - (1 - rate))).toBeLessThan(0.05);
    }
  });

  it('runs the fused kernels on native, the decomposition when switched off', async () => {
    const x = () => tf.tensor(values(64, 1), [4, 16]);
    const w = () => tf.ones([16]);
    expect(await kernelsRun(() => rmsNorm(x(), w(), 1e-6))).toContain(FUSED.rmsNorm);
    expect(await kernelsRun(() => gatedActivate(x(), x(), 'silu'))).toContain(FUSED.gatedActivation);
    const qkv = () => tf.tensor(values(64, 2), [1, 2, 4, 8]);
    expect(await kernelsRun(() => attention(qkv(), qkv(), qkv(), causalBias(4, 4), 0.3))).toContain(FUSED.biasedSoftmax);
    process.env[FUSED_KERNELS_ENV] = '0';
    expect(fusedKernel(FUSED.rmsNorm)).toBe(false);
    const off = await kernelsRun(() => rmsNorm(x(), w(), 1e-6));
    expect(off).not.toContain(FUSED.rmsNorm);
    expect(off).toContain('Rsqrt');
    await tf.setBackend('cpu');
    delete process.env[FUSED_KERNELS_ENV];
    expect(fusedKernel(FUSED.rmsNorm)).toBe(false); // cpu has none
  });

  it('refuses bad input with a message naming the kernel and the field', async () => {
    await tf.setBackend('native');
    const run = (name: string, inputs: Record<string, Tensor>, attrs: Record<string, unknown> = {}) => () => tf.tidy(() => {
      tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap);
    });
    expect(run(FUSED.rmsNorm, { x: tf.ones([2, 8]), w: tf.ones([7]) }, { eps: 1e-6 })).toThrow(/RlhfRmsNorm: weight \[7\] does not match the last axis of \[2,8\]/);
    expect(run(FUSED.gatedActivation, { gate: tf.ones([2, 8]), up: tf.ones([2, 4]) }, { kind: 0 })).toThrow(/shapes \[2,8\] and \[2,4\] differ/);
    expect(run(FUSED.activation, { x: tf.ones([3]) }, { kind: 7 })).toThrow(/unknown activation kind 7/);
    expect(run(FUSED.biasedSoftmax, { x: tf.ones([1, 2, 3, 4]), bias: tf.ones([1, 1, 3, 5]) }, { scale: 1 })).toThrow(/bias \[1,1,3,5\] does not broadcast to \[1,2,3,4\]/);
    const logits = tf.ones([2, 5]);
    expect(run(FUSED.crossEntropyRows, { logits, targets: tf.tensor1d([1, 5], 'int32'), weights: tf.ones([2]) }, { withGrad: true })).toThrow(/target 5 of row 1 is not in \[0, 4\]/);
    expect(run(FUSED.crossEntropyRows, { logits, targets: tf.tensor1d([1, 2, 3], 'int32'), weights: tf.ones([2]) })).toThrow(/targets must be int32 \[2\]/);
    expect(run(FUSED.logProbEntropyRows, { logits, targets: tf.tensor1d([0, 7], 'int32') })).toThrow(/target 7 of row 1 is not in \[0, 4\]/);
    expect(run(FUSED.logProbEntropyRows, { logits, targets: tf.tensor1d([0, 1], 'int32'), d: tf.ones([2, 3]) })).toThrow(/d must be \[2, 2\]/);
  });

  it('leaks no tensors', async () => {
    await tf.setBackend('native');
    const before = tf.memory().numTensors;
    await valueAndGrads('native', (x, w) => rmsNorm(x!, w!, 1e-6), [{ shape: [6, 10] }, { shape: [10] }]);
    await valueAndGrads('native', (g, u) => gatedActivate(g!, u!, 'silu'), [{ shape: [6, 10] }, { shape: [6, 10] }]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
