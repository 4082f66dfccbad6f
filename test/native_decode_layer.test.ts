/**
 * The whole-layer decode calls (engine/native_decode_layer.ts, native/engine/decode_layer.cc; models/fused_decode.ts)
 * beyond the per-family parity of test/native_decode.test.ts: the small-row products and the head against plain
 * loops, a long prefill on the per-op path followed by whole-layer steps, the switch, LoRA adapters inside the
 * layer calls, bf16 weights read as packed (int8 falling back), thread counts, and no tensors left behind.
 */
import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { engineThreads, nativeBackendUnavailable, setEngineThreads } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';
import { NATIVE_DECODE_ENV } from '../src/engine/native_decode.js';
import { decodeHead, FUSED_DECODE_ENV, fusedDecodeUnavailable } from '../src/engine/native_decode_layer.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { DecodingSession, generate } from '../src/models/generation.js';
import { FUSED_DECODE_MAX_MACS, FUSED_DECODE_MAX_ROWS, FusedDecodeStep, fusedDecodeUnsupported } from '../src/models/fused_decode.js';
import { LoraAdapter } from '../src/models/lora.js';
import { dequantize, packWeight } from '../src/models/ops/packed_weight.js';
import type { DecoderModel } from '../src/models/decoder.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { sessionStepLogits } from './helpers/decode_steps.js';
import { seededValues } from './helpers/seeded_values.js';
import { withEnv } from '../src/engine/with_env.js';

const built = nativeBlasAvailable() && !nativeBackendUnavailable();

/** logits [R, V] = norm(x) · head as plain float64 loops; head [V, C] or (inOut) [C, V]. */
function headReference(x: Float32Array, R: number, C: number, V: number, head: Float32Array, inOut: boolean, norm: { w: Float32Array; b: Float32Array | null; kind: 'rmsnorm' | 'layernorm' } | null, eps: number, cap: number): Float64Array {
  const out = new Float64Array(R * V);
  for (let r = 0; r < R; r++) {
    const row = Array.from(x.subarray(r * C, (r + 1) * C));
    let h = row;
    if (norm) {
      const mu = norm.kind === 'layernorm' ? row.reduce((a, v) => a + v, 0) / C : 0;
      const ms = row.reduce((a, v) => a + (v - mu) ** 2, 0) / C;
      h = row.map((v, c) => ((v - mu) / Math.sqrt(ms + eps)) * norm.w[c]! + (norm.b ? norm.b[c]! : 0));
    }
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += h[c]! * head[inOut ? c * V + v : v * C + c]!;
      out[r * V + v] = cap ? Math.tanh(s / cap) * cap : s;
    }
  }
  return out;
}

/** Last-position logits at the prefill and at each of `steps` fixed next tokens, and how many calls were whole-layer. */
function stepLogits(model: DecoderModel, prompts: number[][], masks: number[][], steps: number): { logits: Float32Array[]; fusedCalls: number } {
  const session = new DecodingSession(model, prompts.length, prompts[0]!.length + steps);
  const logits = sessionStepLogits(session, prompts, masks, steps, (s, b) => (5 * s + 3 * b + 2) % 40);
  return { logits, fusedCalls: session.fusedCalls };
}

describe.skipIf(!built)('whole-layer decode calls', () => {
  beforeAll(async () => {
    await initBackend('native', () => {});
  });
  afterEach(() => {
    delete process.env[FUSED_DECODE_ENV];
  });

  it.each([
    { R: 1, C: 37, V: 53 },
    { R: 5, C: 64, V: 48 },
    { R: 16, C: 40, V: 70 },
    { R: 17, C: 9, V: 19 },
    { R: 7, C: 100, V: 9000 }, // [C, V] weights in blocks of 16 rows, the last one partial
  ])('small-row products in both weight layouts, float32 and bf16, with and without a norm and soft-capping, match plain loops (R $R, C $C, V $V)', ({ R, C, V }) => {
    const x = seededValues(R * C, 1);
    const head = seededValues(V * C, 2);
    const w = seededValues(C, 3, 0.5, 1.5);
    const b = seededValues(C, 4);
    const m = { C, eps: 1e-5, normOffset: 0 };
    for (const inOut of [false, true]) {
      for (const norm of [null, { w, b: null, kind: 'rmsnorm' as const }, { w, b, kind: 'layernorm' as const }]) {
        for (const cap of [0, 3]) {
          const want = headReference(x, R, C, V, head, inOut, norm, 1e-5, cap);
          const got = decodeHeadLayout(x, R, norm, head, V, { ...m, norm: norm?.kind ?? 'rmsnorm' }, cap || null, inOut);
          expect(relErr(got, want), `inOut ${inOut}, norm ${norm?.kind ?? 'none'}, cap ${cap}`).toBeLessThan(1e-6);
          // The same head in bf16 (pairs in int32 words) against the loops on its float32 expansion.
          const words = packWeight(head, [V, C], 'bf16');
          const bits = words.data.dataSync() as Int32Array;
          const expanded = dequantize(words).dataSync() as Float32Array;
          words.dispose();
          const gotBf16 = decodeHeadLayout(x, R, norm, bits, V, { ...m, norm: norm?.kind ?? 'rmsnorm' }, cap || null, inOut);
          expect(relErr(gotBf16, headReference(x, R, C, V, expanded, inOut, norm, 1e-5, cap)), `bf16, inOut ${inOut}`).toBeLessThan(1e-6);
        }
      }
    }
  });

  it('the products give the same bits at 1 and 2 threads (work split over output columns)', () => {
    const [R, C, V] = [16, 256, 4096];
    const x = seededValues(R * C, 5);
    const head = seededValues(V * C, 6);
    const m = { C, eps: 1e-5, normOffset: 0, norm: 'rmsnorm' as const };
    try {
      setEngineThreads(1);
      const one = [decodeHeadLayout(x, R, null, head, V, m, null, false), decodeHeadLayout(x, R, null, head, V, m, null, true)];
      setEngineThreads(2);
      const two = [decodeHeadLayout(x, R, null, head, V, m, null, false), decodeHeadLayout(x, R, null, head, V, m, null, true)];
      expect(two[0]).toEqual(one[0]);
      expect(two[1]).toEqual(one[1]);
    } finally {
      setEngineThreads(engineThreads());
    }
  });

  it.each(['llama', 'gpt2'] as const)('%s: a prefill past FUSED_DECODE_MAX_ROWS on the per-op path, then whole-layer steps, match the tensor path', (arch) => {
    const { model } = loadPretrained(fixtureDir(arch));
    const B = 6;
    const T = Math.floor(FUSED_DECODE_MAX_ROWS / B) + 3; // more rows than the limit, within the fixtures' 64 positions
    const pad = (b: number) => (b % 3 === 1 ? 5 : 0); // rows 1 and 4 left-padded by 5
    const prompts = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, j) => (j < pad(b) ? 1 : (j * (b + 3) + 2 * b + 1) % 45)));
    const masks = prompts.map((r, b) => r.map((_, j) => (j < pad(b) ? 0 : 1)));
    const ref = withEnv(NATIVE_DECODE_ENV, '0', () => stepLogits(model, prompts, masks, 5));
    const got = stepLogits(model, prompts, masks, 5);
    expect(got.fusedCalls).toBe(5); // the 5 steps, not the prefill
    const step = new FusedDecodeStep(model);
    expect([step.covers(FUSED_DECODE_MAX_ROWS), step.covers(FUSED_DECODE_MAX_ROWS + 1)]).toEqual([true, false]);
    // A call whose products exceed FUSED_DECODE_MAX_MACS stays on the per-op path whatever its rows (GPT-2 124M past B = 32).
    expect(Object.assign(Object.create(step) as FusedDecodeStep, { macsPerRow: FUSED_DECODE_MAX_MACS / 32 }).covers(33)).toBe(false);
    for (let s = 0; s < ref.logits.length; s++) expect(relErr(got.logits[s]!, ref.logits[s]!), `step ${s}`).toBeLessThan(1e-5);
    model.dispose();
  });

  it(`${FUSED_DECODE_ENV}=0 keeps the per-op path, with the same logits; generation leaves no tensor behind`, () => {
    const { model } = loadPretrained(fixtureDir('qwen2'));
    const prompts = [[5, 9, 2, 7], [1, 1, 6, 3]];
    const masks = [[1, 1, 1, 1], [0, 0, 1, 1]];
    const off = withEnv(FUSED_DECODE_ENV, '0', () => {
      expect(fusedDecodeUnavailable()).toMatch(/RLHF_FUSED_DECODE=0/);
      return stepLogits(model, prompts, masks, 4);
    });
    const on = stepLogits(model, prompts, masks, 4);
    expect(off.fusedCalls).toBe(0);
    expect(on.fusedCalls).toBe(5);
    for (let s = 0; s < on.logits.length; s++) expect(relErr(on.logits[s]!, off.logits[s]!), `step ${s}`).toBeLessThan(1e-5);
    const before = tf.memory().numTensors;
    generate(model, prompts, masks, { maxNewTokens: 6, eosTokenId: null });
    generate(model, prompts, masks, { maxNewTokens: 6, eosTokenId: null, doSample: true, topK: 5, returnLogProbs: true });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it.each(['llama', 'gpt2', 'phi3'] as const)('%s: a LoRA adapter on every projection runs inside the layer calls and matches the tensor path; disabled, it is left out', (arch) => {
    const { model } = loadPretrained(fixtureDir(arch));
    const prompts = [[5, 9, 2, 7], [1, 1, 6, 3]];
    const masks = [[1, 1, 1, 1], [0, 0, 1, 1]];
    model.lora = LoraAdapter.create(model.spec, { r: 2, alpha: 4, dropout: 0, targetModules: 'all-linear' }, 1);
    // B starts at zero (PEFT's init), which would hide the term: give it values.
    let seed = 10;
    for (const m of model.lora.modules.values()) m.B.assign(tf.tensor(seededValues(m.B.size, seed++, -0.5, 0.5), m.B.shape));
    expect(fusedDecodeUnsupported(model)).toBe('');
    for (const enabled of [true, false]) {
      model.loraEnabled = enabled;
      const got = stepLogits(model, prompts, masks, 3);
      const ref = withEnv(NATIVE_DECODE_ENV, '0', () => stepLogits(model, prompts, masks, 3));
      expect(got.fusedCalls).toBe(4);
      for (let s = 0; s < ref.logits.length; s++) expect(relErr(got.logits[s]!, ref.logits[s]!), `adapter ${enabled ? 'on' : 'off'}, step ${s}`).toBeLessThan(1e-5);
    }
    model.dispose();
  });

  it.each(['llama', 'gpt2'] as const)('%s: bf16-packed weights run inside the layer calls and match the tensor path; int8 keeps the per-op path', (arch) => {
    const prompts = [[5, 9, 2, 7], [1, 1, 6, 3]];
    const masks = [[1, 1, 1, 1], [0, 0, 1, 1]];
    for (const format of ['bf16', 'int8'] as const) {
      const { model } = loadPretrained(fixtureDir(arch));
      model.packFrozen(format);
      expect(fusedDecodeUnsupported(model)).toBe(format === 'bf16' ? '' : 'packed frozen weights (int8)');
      const got = stepLogits(model, prompts, masks, 3);
      const ref = withEnv(NATIVE_DECODE_ENV, '0', () => stepLogits(model, prompts, masks, 3));
      expect(got.fusedCalls).toBe(format === 'bf16' ? 4 : 0);
      for (let s = 0; s < ref.logits.length; s++) expect(relErr(got.logits[s]!, ref.logits[s]!), `${format}, step ${s}`).toBeLessThan(1e-5);
      model.dispose();
    }
  });
});

/** decodeHead with the head's layout chosen (generation always passes [V, C]; the layers' [C, V] weights take the other). */
function decodeHeadLayout(
  x: Float32Array, R: number, norm: { w: Float32Array; b: Float32Array | null } | null, head: Float32Array | Int32Array, V: number,
  m: { C: number; eps: number; normOffset: number; norm: 'rmsnorm' | 'layernorm' }, cap: number | null, inOut: boolean,
): Float32Array {
  return decodeHead(x, R, norm ? { weight: norm.w, bias: norm.b } : null, head, V, m, cap, inOut);
}
