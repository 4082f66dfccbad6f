/** Making experience on the gpt2 fixture with the toy reward model: masks, log-probs, rewards, models sharing a base. */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { Rng } from '../src/engine/rng.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { ValueModel } from '../src/models/value_model.js';
import { LoraAdapter } from '../src/models/lora.js';
import { makeExperience, answerLogProbs, type ExperienceOptions, type ExperienceModels } from '../src/ppo/experience.js';
import { collate } from '../src/ppo/replay_buffer.js';
import { promptLoader } from '../src/ppo/data.js';
import { withoutAdapter } from '../src/ppo/models.js';
import { buildToyRewardModel, markedShare, tempDir } from './ppo_helpers.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';

let rmDir: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  rmDir = await buildToyRewardModel(join(tempDir('exp'), 'rm'));
});

function models(): ExperienceModels & { dispose(): void } {
  const actor = loadPretrained(fixtureDir('gpt2')).model;
  const initial = loadPretrained(fixtureDir('gpt2')).model;
  const rm = loadPretrained(rmDir);
  const critic = loadPretrained(rmDir);
  return {
    actor, initial, rewardReduction: 'last',
    reward: new ValueModel(rm.model, rm.valueHead!),
    critic: new ValueModel(critic.model, critic.valueHead!),
    dispose() {
      for (const m of [actor, initial, rm.model, critic.model]) m.dispose();
    },
  };
}

const opts = (o: Partial<ExperienceOptions> = {}): ExperienceOptions => ({
  maxNewTokens: 6, temperature: 1, topK: 0, topP: 1, eosTokenId: null, padTokenId: 0, rng: new Rng(5),
  klCoef: 0.1, klEstimator: 'k1', rewardClip: 10, gamma: 1, lam: 1, advantage: 'gae', whitenAdvantages: false, ...o,
});

// Left-padded prompts of different lengths.
const prompts = [[17, 40, 41, 42], [0, 0, 50, 51], [0, 60, 61, 62]];
const masks = [[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]];

describe('makeExperience', () => {
  it('stops a row at its first EOS (inclusive) and scores what the reward model scores alone', () => {
    const m = models();
    const free = makeExperience(m, prompts, masks, opts());
    // Declare the 3rd token row 0 sampled the EOS: with the same seed the row now stops there.
    const eos = free.items[0]!.answer[2]!;
    const first = free.items[0]!.answer.indexOf(eos);
    const { items, stats } = makeExperience(m, prompts, masks, opts({ eosTokenId: eos, padTokenId: 7 }));
    expect(items[0]!.answer).toEqual(free.items[0]!.answer.slice(0, first + 1));
    expect(items[0]!.answer.at(-1)).toBe(eos);
    expect(stats.responseLengths[0]).toBe(first + 1);
    expect(items[0]!.prompt).toEqual([17, 40, 41, 42]);
    expect(items[1]!.prompt).toEqual([50, 51]);
    for (const it of items) {
      expect(it.logProbs.length).toBe(it.answer.length);
      expect(it.values.length).toBe(it.answer.length);
      // The toy reward model scores the marked share of prompt + answer, padding excluded.
      expect(it.score).toBeCloseTo(markedShare([...it.prompt, ...it.answer]) - 0.5, 2);
    }
    m.dispose();
  });

  it('answer_sum: the score is the sum of the reward model\'s values over the answer tokens alone', () => {
    const m = { ...models(), rewardReduction: 'answer_sum' as const };
    const eos = makeExperience(m, prompts, masks, opts()).items[0]!.answer[3]!;
    const { items } = makeExperience(m, prompts, masks, opts({ eosTokenId: eos, padTokenId: 7 }));
    for (const it of items) {
      // each rollout alone, unpadded: its per-token values, the prompt's left out
      const seq = [...it.prompt, ...it.answer];
      const v = tf.tidy(() => m.reward.values(tf.tensor2d([seq], undefined, 'int32'), tf.ones([1, seq.length], 'int32')).arraySync() as number[][])[0]!;
      const expected = v.slice(it.prompt.length).reduce((a, x) => a + x, 0);
      const withPrompt = v.reduce((a, x) => a + x, 0);
      expect(Math.abs(it.score - expected)).toBeLessThan(1e-4 * Math.max(1, Math.abs(expected)));
      expect(Math.abs(withPrompt - expected)).toBeGreaterThan(1e-3); // the prompt's values would have changed it
    }
    m.dispose();
  });

  it('the training forward over a re-padded minibatch reproduces the rollout log-probs', () => {
    const m = models();
    const { items } = makeExperience(m, prompts, masks, opts());
    const b = collate([items[2]!, items[0]!, items[1]!], 0);
    const lp = tf.tidy(() => answerLogProbs(m.actor, tf.tensor2d(b.inputIds, undefined, 'int32'), tf.tensor2d(b.attentionMask, undefined, 'int32'),
      tf.tensor2d(b.answer, undefined, 'int32'), b.promptLength).arraySync() as number[][]);
    const want = [items[2]!, items[0]!, items[1]!].map((it) => it.logProbs);
    want.forEach((row, i) => expect(relErr(lp[i]!.slice(0, row.length), row)).toBeLessThan(1e-5));
    m.dispose();
  });

  it('rewards: no KL at the start, the clipped score on the last token; returns equal it with γ = λ = 1', () => {
    const m = models();
    const { items, stats } = makeExperience(m, prompts, masks, opts({ rewardClip: 0.05 }));
    for (const it of items) {
      expect(it.refLogProbs).toEqual(it.logProbs); // actor = initial model: KL 0
      const clipped = Math.max(-0.05, Math.min(0.05, it.score));
      for (const r of it.returns) expect(r).toBeCloseTo(clipped, 5);
      it.advantages.forEach((a, t) => expect(a).toBeCloseTo(clipped - it.values[t]!, 5));
    }
    expect(stats.klK1.every((k) => k === 0)).toBe(true);
    m.dispose();
  });

  it('a LoRA actor reads its frozen base as the initial model (adapter off): one copy, a real KL', () => {
    const m = models();
    m.initial.dispose();
    const actor = m.actor;
    actor.lora = LoraAdapter.create(actor.spec, { r: 2, alpha: 4, dropout: 0, targetModules: ['c_attn'] }, 1);
    for (const { B } of actor.lora.modules.values()) B.assign(tf.randomNormal(B.shape, 0, 0.5, 'float32', 3));
    const { items, stats } = makeExperience({ ...m, initial: actor }, prompts, masks, opts());
    const base = loadPretrained(fixtureDir('gpt2')).model;
    const b = collate(items, 0);
    const args = () => [tf.tensor2d(b.inputIds, undefined, 'int32'), tf.tensor2d(b.attentionMask, undefined, 'int32'), tf.tensor2d(b.answer, undefined, 'int32')] as const;
    const refShared = tf.tidy(() => withoutAdapter(actor, () => answerLogProbs(actor, ...args(), b.promptLength)).arraySync() as number[][]);
    const refBase = tf.tidy(() => answerLogProbs(base, ...args(), b.promptLength).arraySync() as number[][]);
    items.forEach((it, i) => {
      expect(relErr(it.refLogProbs, refBase[i]!.slice(0, it.answer.length))).toBeLessThan(1e-5);
      expect(relErr(refShared[i]!, refBase[i]!)).toBeLessThan(1e-5);
      expect(relErr(it.logProbs, it.refLogProbs)).toBeGreaterThan(1e-3);
    });
    expect(actor.loraEnabled).toBe(true);
    expect(stats.klK3.every((k) => k > 0)).toBe(true);
    base.dispose();
    actor.dispose();
    m.reward.backbone.dispose();
    m.critic.backbone.dispose();
  });

  it('leaves no tensors behind', () => {
    const m = models();
    makeExperience(m, prompts, masks, opts());
    const before = tf.memory().numTensors;
    makeExperience(m, prompts, masks, opts({ whitenAdvantages: true, advantage: 'coati' }));
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});

describe('prompt sampler', () => {
  it('an episode of N/B batches sees every prompt once, and the next episode reshuffles', () => {
    const prompts = Array.from({ length: 16 }, (_, i) => [100 + i]);
    const loader = promptLoader(prompts, 4, 0, 42);
    const episode = () => Array.from({ length: 4 }, () => loader.next().batch.inputIds.map((r) => r[0]!)).flat();
    const e1 = episode();
    const e2 = episode();
    const all = prompts.map((p) => p[0]!);
    expect([...e1].sort((a, b) => a - b)).toEqual(all);
    expect([...e2].sort((a, b) => a - b)).toEqual(all);
    expect(e1).not.toEqual(e2);
    // Left padding for prompts of different lengths.
    const mixed = promptLoader([[1, 2, 3], [4]], 2, 9, 1).next().batch;
    expect(mixed.attentionMask.map((r) => r.join(''))).toContain('001');
    expect(mixed.inputIds.some((r) => r.join() === '9,9,4')).toBe(true);
  });
});
