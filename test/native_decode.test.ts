/**
 * The native decode kernel (engine/native_decode.ts, native/engine/decode_attention.cc) against the tensor path it
 * replaces, on the native backend, across the fixture families: the last-position logits of a left-padded batch at
 * the prefill and at every decode step (relative error ≤ 1e-5), greedy ids, and the families it leaves to the
 * tensor path.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { nativeBackendUnavailable } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { NATIVE_DECODE_ENV, nativeDecodeUnavailable, NativeKVCache, decodeAttention } from '../src/engine/native_decode.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { DecodingSession, generate, repeatedRows, SHARED_PREFILL_ENV } from '../src/models/generation.js';
import { Rng } from '../src/engine/rng.js';
import type { DecoderModel } from '../src/models/decoder.js';
import { ARCHS, fixtureDir, relErr } from './helpers/fixtures.js';
import { sessionStepLogits } from './helpers/decode_steps.js';
import { withEnv } from '../src/engine/with_env.js';

const built = nativeBlasAvailable() && !nativeBackendUnavailable();

/** Last-position logits of each step: the prompt, then `steps` fixed tokens, through one session. */
function stepLogits(model: DecoderModel, prompts: number[][], masks: number[][], steps: number, kernel: boolean): { logits: Float32Array[]; native: boolean; fusedCalls: number } {
  const open = () => new DecodingSession(model, prompts.length, prompts[0]!.length + steps);
  const session = kernel ? open() : withEnv(NATIVE_DECODE_ENV, '0', open);
  const native = session.nativeKernel;
  const logits = sessionStepLogits(session, prompts, masks, steps, (s, b) => (7 * s + 3 * b + 1) % 50);
  return { logits, native, fusedCalls: session.fusedCalls };
}

describe.skipIf(!built)('native decode kernel', () => {
  beforeAll(async () => {
    await initBackend('native', () => {});
  });
  afterEach(() => {
    delete process.env[NATIVE_DECODE_ENV];
  });

  it.each(ARCHS)('%s: logits of a left-padded batch at the prefill and each decode step match the tensor path', (arch) => {
    const { model } = loadPretrained(fixtureDir(arch));
    // Row 1 left-padded by 3 (its padding ids are arbitrary: the mask hides them).
    const prompts = [[5, 9, 2, 7, 11, 4, 8], [1, 1, 1, 6, 3, 12, 10]];
    const masks = [[1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]];
    const ref = stepLogits(model, prompts, masks, 6, false);
    const got = stepLogits(model, prompts, masks, 6, true);
    expect(ref.native).toBe(false);
    expect(got.native, model.nativeDecodeUnsupported()).toBe(arch !== 'bloom'); // BLOOM's ALiBi stays on the tensor path
    // Every step (prefill of 2 × 7 rows included) through the whole-layer calls.
    expect(got.fusedCalls, arch).toBe(arch === 'bloom' ? 0 : 7);
    for (let s = 0; s < ref.logits.length; s++) expect(relErr(got.logits[s]!, ref.logits[s]!), `step ${s}`).toBeLessThan(1e-5);
    model.dispose();
  });

  it('greedy generation is the same with the kernel and without, padded rows included (GPT-NeoX, Gemma 2)', () => {
    for (const arch of ['gpt_neox', 'gemma2'] as const) {
      const { model } = loadPretrained(fixtureDir(arch));
      const prompts = [[5, 9, 2, 7], [1, 1, 6, 3]];
      const masks = [[1, 1, 1, 1], [0, 0, 1, 1]];
      const withKernel = generate(model, prompts, masks, { maxNewTokens: 8, eosTokenId: null });
      process.env[NATIVE_DECODE_ENV] = '0';
      const without = generate(model, prompts, masks, { maxNewTokens: 8, eosTokenId: null });
      delete process.env[NATIVE_DECODE_ENV];
      expect(withKernel.sequences, arch).toEqual(without.sequences);
      model.dispose();
    }
  });

  it('finds the rows that repeat an earlier one, the mask included', () => {
    expect(repeatedRows([[1, 2], [3, 4], [1, 2], [1, 2]], [[1, 1], [1, 1], [1, 1], [0, 1]])).toEqual([0, 1, 0, 3]);
    expect(repeatedRows([[1, 2], [3, 4]], [[1, 1], [1, 1]])).toBeNull();
  });

  it.each([
    ['whole-layer calls', 7, 3],
    ['per-op prefill', 50, 3], // 8 distinct rows × 50 positions: past the 256 rows the whole-layer calls take
  ])('a prompt repeated in the batch runs its prefill once (%s): the same logits at every step and the same samples', (_, P, steps) => {
    for (const arch of ['llama', 'gpt2'] as const) {
      const { model } = loadPretrained(fixtureDir(arch));
      const a = Array.from({ length: P }, (_, i) => (5 * i + 3) % 40);
      const b = [9, 9, 9, ...Array.from({ length: P - 3 }, (_, i) => (7 * i + 1) % 40)];
      const bm = [0, 0, 0, ...new Array<number>(P - 3).fill(1)];
      const full = new Array<number>(P).fill(1);
      // A, A, B (left-padded), A, B, and six distinct rows so that the per-op case is past the whole-layer limit
      const extra = [1, 2, 3, 4, 5, 6].map((k) => Array.from({ length: P }, (_, i) => (k * i + 11) % 40));
      const prompts = [a, a, b, a, b, ...extra];
      const masks = [full, full, bm, full, bm, ...extra.map(() => full)];
      const open = () => new DecodingSession(model, prompts.length, P + steps);
      const shared = open();
      const got = sessionStepLogits(shared, prompts, masks, steps, (s, r) => (3 * s + r) % 40);
      const ref = withEnv(SHARED_PREFILL_ENV, '0', () => {
        const plain = open();
        const l = sessionStepLogits(plain, prompts, masks, steps, (s, r) => (3 * s + r) % 40);
        expect(plain.prefillRows).toBe(11);
        return l;
      });
      expect(shared.prefillRows, arch).toBe(8);
      for (let s = 0; s <= steps; s++) expect(relErr(got[s]!, ref[s]!), `${arch} step ${s}`).toBeLessThan(1e-6);
      const sample = () => generate(model, prompts, masks, { maxNewTokens: 6, doSample: true, topK: 20, eosTokenId: null, rng: new Rng(7) }).sequences;
      expect(sample(), arch).toEqual(withEnv(SHARED_PREFILL_ENV, '0', sample));
      model.dispose();
    }
  });

  it('says why it does not run: another backend, or switched off', async () => {
    process.env[NATIVE_DECODE_ENV] = '0';
    expect(nativeDecodeUnavailable()).toMatch(/RLHF_NATIVE_DECODE=0/);
    delete process.env[NATIVE_DECODE_ENV];
    expect(nativeDecodeUnavailable()).toBe('');
    await tf.setBackend('cpu');
    try {
      expect(nativeDecodeUnavailable()).toMatch(/not native/);
    } finally {
      await tf.setBackend('native');
    }
  });

  it.each([
    { hs: 20, window: 9 as number | null, rotary: true },
    { hs: 64, window: null as number | null, rotary: false },
  ])('many queries per call (prefill, then 5 more) match attention written out in plain loops (head size $hs, window $window, rotary $rotary)', ({ hs, window, rotary }) => {
    // Long enough that the kernel scores whole 16-key blocks and groups of query rows; grouped kv heads, a padded row.
    const [B, H, G, cap] = [2, 4, 2, 48];
    const calls = [37, 5];
    const rng = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const rand = rng(7);
    const cache = new NativeKVCache(B, 1, G, hs, cap);
    for (let j = 0; j < cap; j++) cache.mask[j] = 1;
    for (let j = 0; j < cap; j++) cache.mask[cap + j] = j < 3 ? 0 : 1;
    const invFreq = Float32Array.from({ length: hs / 2 }, (_, i) => 10000 ** (-2 * i / hs));
    const p = { heads: H, kvHeads: G, headDim: hs, scale: 0.3, softcap: null, window, rotary: rotary ? { invFreq, scaling: 1 } : null, layout: { qOffset: 0, qRow: H * hs, kOffset: 0, kRow: G * hs, vOffset: 0, vRow: G * hs, headStride: hs } };
    const keys: number[][][] = [[], []]; // [b][slot] → G·hs
    const vals: number[][][] = [[], []];
    let past = 0;
    for (const T of calls) {
      const q = Array.from({ length: B * T * H * hs }, rand), k = Array.from({ length: B * T * G * hs }, rand), v = Array.from({ length: B * T * G * hs }, rand);
      // Position ids as generation gives them: the padded row counts from its first real token.
      const pos = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => Math.max(0, past + t - (b ? 3 : 0))));
      // HF's halves rotation of each head (float32 angle, as the kernel), applied here to copies for the reference.
      const rope = (x: number[], at: number, heads: number, position: number) => {
        if (!rotary) return;
        for (let h = 0; h < heads; h++) {
          for (let i = 0; i < hs / 2; i++) {
            const f = Math.fround(position * invFreq[i]!);
            const [a, c] = [x[at + h * hs + i]!, x[at + h * hs + i + hs / 2]!];
            x[at + h * hs + i] = a * Math.cos(f) - c * Math.sin(f);
            x[at + h * hs + i + hs / 2] = c * Math.cos(f) + a * Math.sin(f);
          }
        }
      };
      const qr0 = [...q], kr0 = [...k];
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          rope(qr0, (b * T + t) * H * hs, H, pos[b]![t]!);
          rope(kr0, (b * T + t) * G * hs, G, pos[b]![t]!);
        }
      }
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          keys[b]!.push(kr0.slice((b * T + t) * G * hs, (b * T + t + 1) * G * hs));
          vals[b]!.push(v.slice((b * T + t) * G * hs, (b * T + t + 1) * G * hs));
        }
      }
      const got = tf.tidy(() => decodeAttention(tf.tensor3d(q, [B, T, H * hs]), tf.tensor3d(k, [B, T, G * hs]), tf.tensor3d(v, [B, T, G * hs]), tf.tensor2d(pos, [B, T], 'int32'), cache, 0, p).dataSync() as Float32Array);
      const want = new Float32Array(got.length);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          const last = past + t;
          const first = window ? Math.max(0, last - window + 1) : 0;
          for (let h = 0; h < H; h++) {
            const g = Math.floor(h / (H / G));
            const qr = qr0.slice(((b * T + t) * H + h) * hs, ((b * T + t) * H + h + 1) * hs);
            const js: number[] = [];
            for (let j = first; j <= last; j++) if (cache.mask[b * cap + j]) js.push(j);
            // A query that sees no key averages every value fed so far (as the tensor path's finite mask bias does).
            if (!js.length) for (let j = 0; j < past + T; j++) js.push(j);
            const seen = js.some((j) => j >= first && j <= last && cache.mask[b * cap + j]);
            const sc = js.map((j) => (seen ? p.scale * qr.reduce((s, x, i) => s + x * keys[b]![j]![g * hs + i]!, 0) : 0));
            const max = Math.max(...sc);
            const e = sc.map((x) => Math.exp(x - max));
            const sum = e.reduce((a, x) => a + x, 0);
            for (let i = 0; i < hs; i++) want[((b * T + t) * H + h) * hs + i] = js.reduce((s, j, n) => s + (e[n]! / sum) * vals[b]![j]![g * hs + i]!, 0);
          }
        }
      }
      expect(relErr(got, want), `past ${past}`).toBeLessThan(1e-5);
      past += T;
      cache.length = past;
    }
  });

  it('refuses positions beyond the cache, a wrong batch, and short arrays', () => {
    const cache = new NativeKVCache(1, 1, 1, 4, 2);
    const p = { heads: 1, kvHeads: 1, headDim: 4, scale: 0.5, softcap: null, window: null, rotary: null, layout: { qOffset: 0, qRow: 4, kOffset: 0, kRow: 4, vOffset: 0, vRow: 4, headStride: 4 } };
    tf.tidy(() => {
      const x = tf.ones([1, 3, 4]);
      expect(() => decodeAttention(x, x, x, tf.zeros([1, 3], 'int32'), cache, 0, p)).toThrow(/exceed the cache's capacity 2/);
      expect(() => decodeAttention(x, x, x, tf.zeros([2, 1], 'int32'), cache, 0, p)).toThrow(/batch 2/);
      const short = tf.ones([1, 1, 2]);
      expect(() => decodeAttention(short, x, x, tf.zeros([1, 1], 'int32'), cache, 0, p)).toThrow(/q is shorter/);
    });
  });
});
