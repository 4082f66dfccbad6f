/**
 * PEFT prefix tuning and prompt tuning adapters against peft 0.21 (test/fixtures/hf/<arch>/{prefix,prompt}): logits
 * of the parent's left-padded batch within 1e-4 (prompt tuning: with the 4 virtual positions first, as peft returns
 * them) and 8 greedy tokens after row 0, equal with and without the KV cache, on cpu and wasm.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { FIXTURES, relErr } from './helpers/fixtures.js';
import { readSafetensors } from '../src/hub/safetensors.js';

const ARCHS = ['gpt2', 'llama', 'qwen2'] as const;
const KINDS = ['prefix', 'prompt'] as const;
const cases = ['cpu', 'wasm'].flatMap((b) => ARCHS.flatMap((a) => KINDS.map((k) => [b, a, k] as const)));

describe.each(cases)('%s backend: %s %s tuning matches peft', (backend, arch, kind) => {
  const dir = join(FIXTURES, 'hf', arch);
  const exp = readSafetensors(join(dir, kind, 'expected.safetensors')).tensors;
  const ids = exp.get('input_ids')!;
  const mask = exp.get('attention_mask')!;
  const [B, T] = ids.shape as [number, number];
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  it('logits of the padded batch within 1e-4 (every position)', () => {
    const { model } = loadPretrained(dir, { adapter: join(dir, kind), promptLearning: true });
    const logits = tf.tidy(() => {
      const out = model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32'), keepVirtual: true });
      return model.logits(out.hidden);
    });
    const want = exp.get('logits')!;
    expect(logits.shape).toEqual(want.shape);
    expect(relErr(logits.dataSync(), want.data)).toBeLessThan(1e-4);
    logits.dispose();
    model.dispose();
  });

  it('greedy tokens after row 0 equal peft, with and without the KV cache', () => {
    const { model } = loadPretrained(dir, { adapter: join(dir, kind), promptLearning: true });
    const prompt = [Array.from(ids.data.slice(0, T))];
    const want = Array.from(exp.get('greedy_ids')!.data);
    for (const useCache of [true, false]) {
      const out = generate(model, prompt, null, { maxNewTokens: want.length - T, eosTokenId: null, useCache });
      expect(out.sequences[0], `useCache ${useCache}`).toEqual(want);
    }
    model.dispose();
  });
});
