/**
 * PPO end to end on the toy task (test/ppo_helpers.ts): 30 episodes raise the reward clearly with the KL to the
 * initial model bounded, memory stays flat, and all four models reload from the checkpoint.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { ValueModel } from '../src/models/value_model.js';
import type { DecoderModel } from '../src/models/decoder.js';
import { PpoTrainer } from '../src/ppo/trainer.js';
import { buildToyRewardModel, tempDir, toyConfig, writeToyPrompts } from './ppo_helpers.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';

const ids = [[0, 0, 17, 40, 41, 3, 13, 23], [5, 6, 7, 8, 9, 10, 11, 12]];
const mask = [[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]];
const withBatch = (fn: (ids: tf.Tensor, mask: tf.Tensor) => tf.Tensor): number[] =>
  tf.tidy(() => Array.from(fn(tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask, undefined, 'int32')).dataSync()));
const logitsOf = (m: DecoderModel) => withBatch((i, k) => m.logits(m.forward(i, { attentionMask: k }).hidden));
const valuesOf = (v: ValueModel) => withBatch((i, k) => v.values(i, k));

let dir: string;
let rmDir: string;
let prompts: string;
beforeAll(async () => {
  await initBackend('wasm', () => {});
  dir = tempDir('train');
  rmDir = await buildToyRewardModel(join(dir, 'rm'));
  prompts = writeToyPrompts(dir);
});

describe('PPO on the toy task', () => {
  it('30 episodes raise the mean reward clearly, KL stays bounded, memory flat; all four models reload', async () => {
    const savePath = join(dir, 'out');
    const config = { ...toyConfig(rmDir, prompts, savePath), lr: 3e-3, trainBatchSize: 8, maxNewTokens: 8 };
    const tensorsAt = new Map<number, number>();
    const trainer = await PpoTrainer.create(config, {
      log: () => {}, progressBar: false,
      onEpisode: (ep) => tensorsAt.set(ep, tf.memory().numTensors),
    });
    expect(existsSync(savePath)).toBe(false); // nothing written before training starts
    const result = await trainer.train();
    const h = result.history;
    expect(h).toHaveLength(30);
    const avg = (from: number, to: number, key: string) => h.slice(from, to).reduce((a, r) => a + r[key]!, 0) / (to - from);
    const first = avg(0, 5, 'reward/mean');
    const last = avg(25, 30, 'reward/mean');
    // Marked share of the sequences: about 0.06 at the start (−0.44), clearly higher after 30 episodes.
    expect(last - first).toBeGreaterThan(0.1);
    for (const r of h) {
      expect(Number.isFinite(r['objective/kl']!)).toBe(true);
      expect(r['objective/kl_k3']!).toBeGreaterThanOrEqual(0);
    }
    expect(avg(25, 30, 'objective/kl')).toBeLessThan(20); // nats over 8 answer tokens
    expect(avg(25, 30, 'objective/kl')).toBeGreaterThan(0);
    expect(tensorsAt.get(30)).toBe(tensorsAt.get(2));
    expect(result.peakTensorBytes).toBeGreaterThan(0);

    // Logs: one metrics record per episode with the documented names, TensorBoard events, samples.
    const logDir = join(savePath, 'logs');
    const lines = readFileSync(join(logDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (const key of ['reward/mean', 'objective/kl', 'policy/entropy', 'policy/clipfrac', 'policy/approxkl', 'loss/policy', 'loss/value',
      'value/clipfrac', 'response/length', 'time/generate_s', 'time/train_s', 'train/peak_tensor_mb']) {
      expect(lines[29]).toHaveProperty(key);
    }
    expect(readdirSync(logDir).some((f) => f.startsWith('events.out.tfevents'))).toBe(true);
    expect(readFileSync(join(logDir, 'samples.jsonl'), 'utf8').trim().split('\n').length).toBe(6); // every 10 episodes, 2 each

    // All four models reload: the actor and critic from the checkpoint, the initial and reward models from the
    // directories it records.
    const trained = trainer.modelSet;
    const actorLogits = logitsOf(trained.actor);
    const criticValues = valuesOf(trained.critic);
    const reloadedActor = loadPretrained(savePath).model;
    expect(relErr(logitsOf(reloadedActor), actorLogits)).toBeLessThan(1e-6);
    reloadedActor.dispose();
    const critic = loadPretrained(join(savePath, 'critic'));
    expect(critic.valueHead).not.toBeNull();
    const criticModel = new ValueModel(critic.model, critic.valueHead!);
    expect(relErr(valuesOf(criticModel), criticValues)).toBeLessThan(1e-6);
    critic.model.dispose();
    criticModel.head.dispose();
    const klCoef = trainer.klCoef;
    trainer.dispose();

    const resumed = await PpoTrainer.create({ ...config, resume: savePath }, { log: () => {} });
    const m = resumed.modelSet;
    expect(resumed.episodesDone).toBe(30);
    expect(resumed.klCoef).toBe(klCoef);
    expect(relErr(logitsOf(m.actor), actorLogits)).toBeLessThan(1e-6);
    expect(relErr(valuesOf(m.critic), criticValues)).toBeLessThan(1e-6);
    const sft = loadPretrained(fixtureDir('gpt2')).model;
    expect(relErr(logitsOf(m.initial), logitsOf(sft))).toBeLessThan(1e-6);
    expect(relErr(logitsOf(m.actor), logitsOf(sft))).toBeGreaterThan(1e-3);
    sft.dispose();
    const rm = loadPretrained(rmDir);
    const rmModel = new ValueModel(rm.model, rm.valueHead!);
    expect(relErr(valuesOf(m.reward), valuesOf(rmModel))).toBeLessThan(1e-6);
    rm.model.dispose();
    rmModel.head.dispose();
    resumed.dispose();
  }, 600_000);
});
