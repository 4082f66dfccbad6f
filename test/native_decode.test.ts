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
import { DecodingSession, generate } from '../src/models/generation.js';
import type { DecoderModel } from '../src/models/decoder.js';
import { ARCHS, fixtureDir, relErr } from './helpers/fixtures.js';

const built = nativeBlasAvailable() && !nativeBackendUnavailable();

/** Last-position logits of each step: the prompt, then `steps` fixed tokens, through one session. */
function stepLogits(model: DecoderModel, prompts: number[][], masks: number[][], steps: number, kernel: boolean): { logits: Float32Array[]; native: boolean } {
  const before = process.env[NATIVE_DECODE_ENV];
  if (!kernel) process.env[NATIVE_DECODE_ENV] = '0';
  const session = new DecodingSession(model, prompts.length, prompts[0]!.length + steps);
  if (before === undefined) delete process.env[NATIVE_DECODE_ENV];
  else process.env[NATIVE_DECODE_ENV] = before;
  const seqs = prompts.map((r) => [...r]);
  const m = masks.map((r) => [...r]);
  const out: Float32Array[] = [];
  try {
    for (let s = 0; s <= steps; s++) {
      const l = session.nextLogits(seqs, m);
      out.push(l.dataSync() as Float32Array);
      l.dispose();
      seqs.forEach((r, b) => r.push((7 * s + 3 * b + 1) % 50));
      m.forEach((r) => r.push(1));
    }
    return { logits: out, native: session.nativeKernel };
  } finally {
    session.dispose();
  }
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
