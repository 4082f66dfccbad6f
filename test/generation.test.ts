import { describe, it, expect, beforeAll } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { topKIndices } from '../src/models/sampling.js';
import { Rng } from '../src/engine/rng.js';
import { ARCHS, expectedJson, fixtureDir } from './helpers/fixtures.js';

beforeAll(async () => {
  await useTestBackend('cpu');
});

describe.each(ARCHS)('%s generation', (arch) => {
  const ej = expectedJson(arch);
  const prompt = ej.greedy.prompt_ids;
  const newTokens = ej.greedy.output_ids.length - prompt.length;

  it.each([true, false])('greedy equals transformers (useCache=%s)', (useCache) => {
    const { model } = loadPretrained(fixtureDir(arch));
    const out = generate(model, [prompt], null, { maxNewTokens: newTokens, useCache });
    expect(out.sequences[0]).toEqual(ej.greedy.output_ids);
    model.dispose();
  });

  it('a left-padded prompt generates what it generates alone, sampled too', () => {
    const { model } = loadPretrained(fixtureDir(arch));
    const short = prompt.slice(2);
    const pad = model.config.padTokenId ?? 0;
    const alone = generate(model, [short], null, { maxNewTokens: 6, eosTokenId: null });
    const batch = generate(model, [prompt, [pad, pad, ...short]], [prompt.map(() => 1), [0, 0, ...short.map(() => 1)]], { maxNewTokens: 6, eosTokenId: null });
    expect(batch.sequences[1]!.slice(prompt.length)).toEqual(alone.sequences[0]!.slice(short.length));
    const s1 = generate(model, [short], null, { maxNewTokens: 6, doSample: true, topK: 20, topP: 0.9, temperature: 0.8, rng: new Rng(7), eosTokenId: null });
    const s2 = generate(model, [short], null, { maxNewTokens: 6, doSample: true, topK: 20, topP: 0.9, temperature: 0.8, rng: new Rng(7), eosTokenId: null });
    expect(s1.sequences).toEqual(s2.sequences);
    model.dispose();
  });
});

describe('generation bookkeeping', () => {
  it('stops a row at EOS: action mask ends at the first EOS inclusive, pad after it', () => {
    const { model } = loadPretrained(fixtureDir('gpt2'));
    const ej = expectedJson('gpt2');
    // Greedy output repeats token 123 (see the fixture): declare it the EOS so row 0 stops at once.
    const eos = ej.greedy.output_ids[ej.greedy.prompt_ids.length]!;
    const before = tf.memory().numTensors;
    const out = generate(model, [ej.greedy.prompt_ids], null, { maxNewTokens: 5, eosTokenId: eos, padTokenId: 7, returnLogProbs: true });
    expect(tf.memory().numTensors).toBe(before);
    expect(out.actionMask[0]).toEqual([1]);
    expect(out.sequences[0]!.at(-1)).toBe(eos);
    expect(out.logProbs![0]![0]).toBeLessThan(0);
    const two = generate(model, [ej.greedy.prompt_ids, ej.greedy.prompt_ids.map((t) => (t + 5) % 600)], null, { maxNewTokens: 4, eosTokenId: eos, padTokenId: 7 });
    expect(two.actionMask[0]).toEqual([1, 0, 0, 0]);
    expect(two.sequences[0]!.slice(-3)).toEqual([7, 7, 7]);
    model.dispose();
  });
});

describe('top-k selection', () => {
  it('picks what a stable descending sort of all indices puts first, ties and infinities included', () => {
    const rng = new Rng(3);
    for (const [V, k] of [[50, 1], [50, 7], [1000, 50], [37, 36]] as const) {
      // few distinct values, so ties are everywhere; some -Infinity as masked logits
      const x = Float32Array.from({ length: V }, () => (rng.next() < 0.1 ? -Infinity : Math.floor(rng.next() * 9)));
      const sorted = Array.from({ length: V }, (_, i) => i).sort((a, b) => (x[b]! === x[a]! ? 0 : x[b]! - x[a]!));
      expect(topKIndices(x, k), `V=${V} k=${k}`).toEqual(sorted.slice(0, k));
    }
  });
});
