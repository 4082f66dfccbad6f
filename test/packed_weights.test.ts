/**
 * Frozen weights packed in bf16 / int8 / nf4 (src/models/ops/packed_weight.ts and its kernels): the packing itself,
 * the products and gather against the float32 math of the dequantised weight (cpu and wasm backends, JS loops and
 * the OpenBLAS addon), dx of the packed linear, the logits of every fixture family against float32, a LoRA step on
 * a bf16 base, and the bytes a packed model holds.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf, type Tensor } from '../src/engine/tf.js';
import { dequantize, NF4_LEVELS, packWeight, toBf16Bits, type PackedFormat } from '../src/models/ops/packed_weight.js';
import { packedEmbedding, packedLinear, packedMatMul } from '../src/models/ops/packed_linear.js';
import { packedProductImpl, setPackedProductImpl } from '../src/models/ops/packed_kernels.js';
import { linear, type WeightLayout } from '../src/models/ops/linear.js';
import { headLogProbsAndEntropy } from '../src/models/ops/head_logprobs.js';
import { lmHeadCrossEntropy } from '../src/models/ops/lm_head_loss.js';
import { causalLmLoss } from '../src/models/ops/loss.js';
import { loadPretrained, savePretrained } from '../src/models/pretrained.js';
import { frozenDtypeFromFlags, frozenModelBytes } from '../src/models/frozen_dtype.js';
import { DEFAULT_MODEL_NAME, PACKAGE_ROOT } from '../src/models/default_model.js';
import { join } from 'node:path';
import { sharedConfigFromOptions } from '../src/cli/common.js';
import { resolveSftConfig, validateSftConfig } from '../src/sft/config.js';
import { resolveRewardConfig } from '../src/reward/config.js';
import { resolveDpoConfig } from '../src/dpo/config.js';
import { resolveGrpoConfig } from '../src/grpo/config.js';
import { resolvePpoConfig } from '../src/ppo/config.js';
import { tmpdir } from 'node:os';
import { LoraAdapter } from '../src/models/lora.js';
import { installNativeMatmul, nativeBlasAvailable } from '../src/engine/native_blas.js';
import { ARCHS, expectedTensors, fixtureDir, relErr } from './helpers/fixtures.js';

const FORMATS: PackedFormat[] = ['bf16', 'int8', 'nf4'];

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

describe('packing', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('bf16 rounds to nearest even and keeps specials', () => {
    expect(toBf16Bits(1)).toBe(0x3f80);
    expect(toBf16Bits(-2)).toBe(0xc000);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1). 1 + 3·2^-8 ties up to 1 + 2^-6.
    expect(toBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(toBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(toBf16Bits(Infinity)).toBe(0x7f80);
    expect(Number.isNaN(new Float32Array(new Uint32Array([toBf16Bits(NaN) << 16]).buffer)[0])).toBe(true);
  });

  it('each format stays within its quantisation step of the float32 values', () => {
    const [R, C] = [7, 130];
    const v = values(R * C, 3);
    for (const format of FORMATS) {
      for (const axis of [0, 1] as const) {
        const w = packWeight(v, [R, C], format, axis);
        const back = dequantize(w).dataSync();
        for (let i = 0; i < v.length; i++) {
          const r = Math.floor(i / C);
          const c = i % C;
          let bound: number;
          if (format === 'bf16') bound = Math.abs(v[i]!) * 2 ** -8;
          else if (format === 'int8') {
            let m = 0;
            for (let k = 0; k < (axis === 0 ? C : R); k++) m = Math.max(m, Math.abs(v[axis === 0 ? r * C + k : k * C + c]!));
            bound = m / 127 / 2;
          } else {
            const b = Math.floor(i / 64);
            let m = 0;
            for (let k = b * 64; k < Math.min(v.length, b * 64 + 64); k++) m = Math.max(m, Math.abs(v[k]!));
            bound = 0.5 * 0.16 * m; // half the widest gap between NF4 levels (−1 → −0.696 is 0.30)
          }
          expect(Math.abs(back[i]! - v[i]!), `${format} axis ${axis} at ${i}`).toBeLessThanOrEqual(bound * (format === 'nf4' ? 2 : 1) + 1e-7);
        }
        if (format === 'nf4') {
          // every value is a level times its block's absmax
          const scales = w.scales!.dataSync();
          for (let i = 0; i < v.length; i += 17) {
            const level = back[i]! / scales[Math.floor(i / 64)]!;
            expect(Math.min(...Array.from(NF4_LEVELS, (l) => Math.abs(l - level)))).toBeLessThan(1e-6);
          }
        }
        expect(w.bytes).toBe(4 * (w.data.size + (w.scales?.size ?? 0)));
        w.dispose();
      }
    }
  });
});

const BACKENDS: string[] = ['cpu', 'wasm'];
const IMPLS: ('js' | 'auto')[] = nativeBlasAvailable() ? ['js', 'auto'] : ['js'];

describe.each(BACKENDS.flatMap((b) => IMPLS.map((i) => [b, i] as const)))('packed products on %s (%s)', (backend, impl) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
    setPackedProductImpl(impl);
    if (impl === 'auto') expect(packedProductImpl()).toBe('openblas');
  });

  it('x·W and x·Wᵀ equal the float32 products of the dequantised weight (≤1e-5), tile edges included', () => {
    const before = tf.memory().numTensors;
    for (const format of FORMATS) {
      for (const [R, C] of [[5, 3], [300, 257], [70, 1100]] as const) {
        const w = packWeight(values(R * C, R + C), [R, C], format, 0);
        const dense = dequantize(w);
        for (const N of [1, 9]) {
          for (const transW of [false, true]) {
            const x = tf.tensor2d(values(N * (transW ? C : R), N), [N, transW ? C : R]);
            const got = packedMatMul(x, w, transW);
            const want = tf.matMul(x, dense, false, transW);
            expect(got.shape).toEqual(want.shape);
            expect(relErr(got.dataSync(), want.dataSync()), `${format} [${R},${C}] N=${N} transW=${transW}`).toBeLessThan(1e-5);
            tf.dispose([x, got, want]);
          }
        }
        dense.dispose();
        w.dispose();
      }
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gathers rows and rejects ids outside the table', () => {
    for (const format of FORMATS) {
      const w = packWeight(values(50 * 12, 5), [50, 12], format, 0);
      const dense = dequantize(w);
      const ids = tf.tensor2d([[3, 0, 49], [7, 7, 1]], [2, 3], 'int32');
      const got = packedEmbedding(w, ids);
      const want = tf.gather(dense, tf.reshape(ids, [-1]));
      expect(got.shape).toEqual([2, 3, 12]);
      expect(relErr(got.dataSync(), want.dataSync())).toBe(0);
      expect(() => packedEmbedding(w, tf.tensor1d([50], 'int32'))).toThrow(/outside the vocabulary of 50/);
      tf.dispose([w.data, w.scales!, dense, ids, got, want].filter(Boolean) as Tensor[]);
    }
  });

  it('dx (and the bias gradient) of the packed linear equal those of the float32 linear, both layouts', () => {
    for (const format of FORMATS) {
      for (const layout of ['out_in', 'in_out'] as WeightLayout[]) {
        const [inD, outD] = [40, 24];
        const shape: [number, number] = layout === 'out_in' ? [outD, inD] : [inD, outD];
        const w = packWeight(values(inD * outD, 11), shape, format, layout === 'out_in' ? 0 : 1);
        const dense = dequantize(w);
        const x = tf.tensor3d(values(2 * 3 * inD, 12), [2, 3, inD]);
        const b = tf.tensor1d(values(outD, 13));
        const dy = tf.tensor3d(values(2 * 3 * outD, 14), [2, 3, outD]);
        const f = (lin: (x: Tensor, b: Tensor) => Tensor) => tf.grads((xx: Tensor, bb: Tensor) => tf.sum(tf.mul(lin(xx, bb), dy)))([x, b]);
        const got = f((xx, bb) => packedLinear(xx, w, bb, layout));
        const want = f((xx, bb) => linear(xx, dense, bb, layout));
        expect(relErr(got[0]!.dataSync(), want[0]!.dataSync()), `${format} ${layout} dx`).toBeLessThan(1e-5);
        expect(relErr(got[1]!.dataSync(), want[1]!.dataSync())).toBeLessThan(1e-6);
        tf.dispose([...got, ...want, dense, x, b, dy]);
        w.dispose();
      }
    }
  });
});

/**
 * Logit error against float32 on the fixture checkpoints: ‖z_packed − z_f32‖ / ‖z_f32‖ over every real position.
 * The bounds are about 3× the largest error measured over the families (see README, "Frozen weights").
 */
const LOGIT_BOUNDS: Record<PackedFormat, number> = { bf16: 1e-2, int8: 5e-2, nf4: 0.45 };
/** The same on the trained default model, about 3× what it measures. */
const TRAINED_BOUNDS: Record<PackedFormat, number> = { bf16: 3e-2, int8: 0.1, nf4: 0.5 };

describe('fixture logits with packed frozen weights (wasm)', () => {
  const table: string[] = [];
  beforeAll(async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    installNativeMatmul();
    setPackedProductImpl('auto');
  });

  it.each(ARCHS)('%s: bf16, int8 and nf4 logits against float32', (arch) => {
    const exp = expectedTensors(arch);
    const ids = exp.get('input_ids')!;
    const mask = exp.get('attention_mask')!;
    const [B, T] = ids.shape as [number, number];
    const run = (format: PackedFormat | null, direct = false) => {
      const { model } = loadPretrained(fixtureDir(arch), direct && format ? { frozenDtype: format } : {});
      const f32Bytes = model.weightBytes();
      if (format && !direct) model.packFrozen(format);
      const logits = tf.tidy(() => model.logits(model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32') }).hidden));
      const V = logits.shape[2]!;
      const all = logits.dataSync() as Float32Array;
      const real: number[] = [];
      for (let i = 0; i < B * T; i++) if ((mask.data as Int32Array)[i]) for (let v = 0; v < V; v++) real.push(all[i * V + v]!);
      const bytes = model.weightBytes();
      logits.dispose();
      model.dispose();
      return { real, bytes, f32Bytes };
    };
    const base = run(null);
    const row: string[] = [arch];
    for (const format of FORMATS) {
      const r = run(format);
      const err = relErr(r.real, base.real);
      row.push(`${format} ${err.toExponential(2)} (${(r.bytes / base.f32Bytes).toFixed(3)}× bytes)`);
      expect(err, `${arch} ${format}`).toBeLessThan(LOGIT_BOUNDS[format]);
      expect(err).toBeGreaterThan(0);
      // Read straight into the packed format (loadPretrained's frozenDtype): the same model, bit for bit.
      const direct = run(format, true);
      expect(relErr(direct.real, r.real), `${arch} ${format} read packed`).toBe(0);
      expect(direct.bytes).toBe(r.bytes);
    }
    table.push(row.join(' | '));
    if (table.length === ARCHS.length) console.log(table.join('\n'));
  });
});

/** The shipped default model (trained weights, unlike the random fixtures): the figure a real model gives. */
const TINY_CHAT = join(PACKAGE_ROOT, 'models', DEFAULT_MODEL_NAME);

describe('trained model, LoRA on a packed base, memory (wasm)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    installNativeMatmul();
    setPackedProductImpl('auto');
  });
  const ids = Array.from({ length: 2 * 24 }, (_, i) => (i * 37 + 11) % 6000);
  const batch = () => tf.tensor2d(ids, [2, 24], 'int32');


  it('tiny-chat logits in each format against float32; greedy next tokens mostly agree', () => {
    const logitsOf = (format: PackedFormat | null) => {
      const { model } = loadPretrained(TINY_CHAT);
      if (format) model.packFrozen(format);
      const z = tf.tidy(() => model.logits(model.forward(batch()).hidden));
      const out = { z: z.dataSync() as Float32Array, top: (tf.tidy(() => tf.argMax(z, -1)).dataSync() as Int32Array) };
      z.dispose();
      model.dispose();
      return out;
    };
    const base = logitsOf(null);
    const row: string[] = ['tiny-chat'];
    for (const format of FORMATS) {
      const r = logitsOf(format);
      const err = relErr(r.z, base.z);
      const agree = r.top.filter((t, i) => t === base.top[i]).length / r.top.length;
      row.push(`${format} ${err.toExponential(2)} (argmax agrees ${(100 * agree).toFixed(0)}%)`);
      expect(err, format).toBeLessThan(TRAINED_BOUNDS[format]);
      // The checkpoint is stored in bf16, so packing it in bf16 loses nothing: what is left is float32 rounding, as
      // the packed kernel sums in another order than OpenBLAS's sgemm (which depends on the CPU's kernel).
      if (format === 'bf16') expect(err).toBeLessThan(1e-6);
    }
    console.log(row.join(' | '));
  });

  it.each([['tiny-chat', TINY_CHAT], ['gpt2 fixture', fixtureDir('gpt2')]])('a LoRA step on a bf16 base (%s): loss and adapter gradients close to float32\'s, and the loss drops', (_, dir) => {
    const step = (format: PackedFormat | null) => {
      const { model } = loadPretrained(dir);
      const V = model.config.vocabSize;
      const tokens = () => tf.tensor2d(ids.map((i) => i % V), [2, 24], 'int32');
      model.lora = LoraAdapter.create(model.spec, { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear' }, 3);
      // B starts at zero (PEFT's init), which would leave A without a gradient: give it values.
      for (const { B } of model.lora.modules.values()) B.assign(tf.mul(tf.randomNormal(B.shape, 0, 1, 'float32', 5), 0.02));
      if (format) model.packFrozen(format);
      const vars = model.lora.trainableVariables();
      const lossOf = () => tf.tidy(() => model.lmLoss(model.forward(tokens(), { training: true }).hidden, tokens()));
      const { value, grads } = tf.variableGrads(() => lossOf() as tf.Scalar, vars);
      const loss0 = value.dataSync()[0]!;
      const g = vars.map((v) => grads[v.name]!.dataSync() as Float32Array);
      for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.5)));
      const l1 = lossOf();
      const loss1 = l1.dataSync()[0]!;
      tf.dispose([value, l1, ...Object.values(grads)]);
      model.dispose();
      return { loss0, loss1, g: g.flatMap((a) => Array.from(a)) };
    };
    const f32 = step(null);
    const bf16 = step('bf16');
    expect(Math.abs(bf16.loss0 - f32.loss0) / f32.loss0).toBeLessThan(5e-3);
    expect(relErr(bf16.g, f32.g)).toBeLessThan(3e-2);
    expect(bf16.loss1).toBeLessThan(bf16.loss0);
    expect(Math.abs(bf16.loss1 - f32.loss1) / f32.loss1).toBeLessThan(5e-3);
  });

  it('gradients flow through model.logits on a packed head: the logits loss equals lmLoss, with the same adapter gradients', () => {
    const { model } = loadPretrained(fixtureDir('opt'));
    const V = model.config.vocabSize;
    const tokens = () => tf.tensor2d(ids.map((i) => i % V), [2, 24], 'int32');
    model.lora = LoraAdapter.create(model.spec, { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' }, 4);
    for (const { B } of model.lora.modules.values()) B.assign(tf.mul(tf.randomNormal(B.shape, 0, 1, 'float32', 6), 0.02));
    model.packFrozen('nf4');
    const vars = model.lora.trainableVariables();
    const viaLogits = tf.variableGrads(() => tf.tidy(() => causalLmLoss(model.logits(model.forward(tokens()).hidden), tokens())) as tf.Scalar, vars);
    const viaHead = tf.variableGrads(() => tf.tidy(() => model.lmLoss(model.forward(tokens()).hidden, tokens())) as tf.Scalar, vars);
    expect(Math.abs(viaLogits.value.dataSync()[0]! - viaHead.value.dataSync()[0]!)).toBeLessThan(1e-4);
    const flat = (g: tf.NamedTensorMap) => vars.flatMap((v) => Array.from(g[v.name]!.dataSync()));
    expect(relErr(flat(viaLogits.grads), flat(viaHead.grads))).toBeLessThan(1e-4);
    tf.dispose([viaLogits.value, viaHead.value, ...Object.values(viaLogits.grads), ...Object.values(viaHead.grads)]);
    model.dispose();
  });

  it('resident bytes (tf.memory): bf16 about half, int8 about a quarter plus scales, nf4 about an eighth plus scales', () => {
    const f32 = frozenModelBytes(TINY_CHAT, 'float32');
    const ratios = Object.fromEntries(FORMATS.map((f) => [f, frozenModelBytes(TINY_CHAT, f) / f32]));
    console.log(`tiny-chat weights: float32 ${(f32 / 2 ** 20).toFixed(2)} MiB; ${FORMATS.map((f) => `${f} ${ratios[f]!.toFixed(3)}×`).join(', ')}`);
    expect(ratios.bf16).toBeGreaterThan(0.5);
    expect(ratios.bf16).toBeLessThan(0.51);
    expect(ratios.int8).toBeLessThan(0.26);
    expect(ratios.nf4).toBeLessThan(0.15);
    const before = tf.memory().numTensors;
    frozenModelBytes(TINY_CHAT, 'nf4');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a packed model refuses to be saved or merged into', () => {
    const { model } = loadPretrained(TINY_CHAT);
    model.lora = LoraAdapter.create(model.spec, { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'] }, 1);
    model.packFrozen('int8');
    expect(() => savePretrained(model, join(tmpdir(), 'never-written'))).toThrow(/packed weights are never saved/);
    expect(() => model.lora!.mergeInto(model.params, model.spec)).toThrow(/never merged/);
    expect(() => model.packFrozen('bf16')).toThrow(/already packed/);
    model.dispose();
  });
});

describe('flags', () => {
  it('--load_in_8bit is --frozen_dtype int8; conflicts and unknown dtypes are refused', () => {
    expect(frozenDtypeFromFlags(undefined, false)).toBe('float32');
    expect(frozenDtypeFromFlags('nf4', false)).toBe('nf4');
    expect(frozenDtypeFromFlags(undefined, true)).toBe('int8');
    expect(frozenDtypeFromFlags('int8', true)).toBe('int8');
    expect(() => frozenDtypeFromFlags('bf16', true)).toThrow(/--load_in_8bit means --frozen_dtype int8/);
    expect(() => frozenDtypeFromFlags('fp8', false)).toThrow(/--frozen_dtype must be one of float32, bf16, int8, nf4/);
    expect(sharedConfigFromOptions({ load_in_8bit: true }).frozenDtype).toBe('int8');
    expect(sharedConfigFromOptions({}).frozenDtype).toBe('float32');
  });

  it('each stage refuses to merge into a packed base, and SFT/RM refuse packing with nothing frozen', () => {
    const sft = (extra: object) => validateSftConfig(resolveSftConfig({ pretrain: TINY_CHAT, dataset: [join(PACKAGE_ROOT, 'datasets', 'sft', 'self-instruct-seed_tasks.jsonl')], savePath: 's', ...extra } as never));
    expect(() => sft({ loraRank: 2, frozenDtype: 'nf4', mergeLoraWeights: true })).toThrow(/--merge_lora_weights cannot merge into a base held in nf4/);
    expect(() => sft({ frozenDtype: 'nf4' })).toThrow(/add --lora_rank R or --peft prefix\|prompt/);
    expect(() => sft({ peft: 'prefix', frozenDtype: 'nf4' })).not.toThrow();
    const rm = { pretrain: 'm', dataset: 'd', savePath: 's' };
    expect(() => resolveRewardConfig({ ...rm, frozenDtype: 'int8' } as never)).toThrow(/add --lora_rank R/);
    expect(() => resolveRewardConfig({ ...rm, loraRank: 2, frozenDtype: 'int8', mergeLoraWeights: true } as never)).toThrow(/cannot merge into a base held in int8/);
    expect(() => resolveDpoConfig({ ...rm, loraRank: 2, frozenDtype: 'bf16', mergeLoraWeights: true } as never)).toThrow(/cannot merge/);
    expect(() => resolveDpoConfig({ ...rm, frozenDtype: 'bf16' } as never)).not.toThrow();
    expect(() => resolveGrpoConfig({ ...rm, rewardFuncs: ['length'], loraRank: 2, frozenDtype: 'bf16', mergeLoraWeights: true } as never)).toThrow(/cannot merge/);
    const ppo = { pretrain: 'm', rmPath: 'r', promptDataset: 'p', savePath: 's' };
    expect(() => resolvePpoConfig({ ...ppo, loraRank: 2, frozenDtype: 'nf4', mergeLoraWeights: true })).toThrow(/cannot merge into a base held in nf4/);
    expect(() => resolvePpoConfig({ ...ppo, frozenDtype: 'fp8' as never })).toThrow(/--frozen_dtype: must be one of/);
    expect(resolvePpoConfig(ppo).frozenDtype).toBe('float32');
  });
});

describe('LM head ops on a packed head equal those on its dequantised float32 head (values and dh)', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    setPackedProductImpl('auto');
  });

  it.each([[null], [3.5]])('headLogProbsAndEntropy and lmHeadCrossEntropy, softcap %s, several row chunks', (cap) => {
    const [N, C, V] = [13, 24, 300];
    const w = packWeight(values(V * C, 21), [V, C], 'int8', 0);
    const dense = dequantize(w);
    const h = tf.tensor2d(values(N * C, 22), [N, C]);
    const targets = tf.tensor1d(Array.from({ length: N }, (_, i) => (i * 53) % V), 'int32');
    const labels = tf.tensor1d(Array.from({ length: N }, (_, i) => (i % 4 === 0 ? -100 : (i * 29) % V)), 'int32');
    const mix = tf.tensor2d(values(N * 2, 23), [N, 2]);
    for (const head of ['logprobs', 'loss'] as const) {
      const f = (W: Tensor | typeof w) => (x: Tensor) =>
        head === 'logprobs' ? tf.sum(tf.mul(headLogProbsAndEntropy(x, W, targets, 4, cap), mix)) : lmHeadCrossEntropy(x, W, labels, 4, cap);
      const got = tf.valueAndGrad(f(w))(h);
      const want = tf.valueAndGrad(f(dense))(h);
      expect(Math.abs(got.value.dataSync()[0]! - want.value.dataSync()[0]!) / Math.abs(want.value.dataSync()[0]!), head).toBeLessThan(1e-5);
      expect(relErr(got.grad.dataSync(), want.grad.dataSync()), `${head} dh`).toBeLessThan(1e-5);
      // without a tape the same values
      const plain = tf.tidy(() => f(w)(h));
      expect(Math.abs(plain.dataSync()[0]! - want.value.dataSync()[0]!) / Math.abs(want.value.dataSync()[0]!)).toBeLessThan(1e-5);
      tf.dispose([got.value, got.grad, want.value, want.grad, plain]);
    }
    tf.dispose([dense, h, targets, labels, mix]);
    w.dispose();
  });
});
