/**
 * LoRA PPO with ptx and an adaptive KL coefficient: one shared base per actor/initial and critic/reward pair, the base
 * untouched, PEFT checkpoints that reload, and Ctrl-C + --resume continuing to exactly the weights, optimizer moments,
 * KL coefficient and samples of an uninterrupted run.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadPretrained, savePretrained } from '../src/models/pretrained.js';
import { DecoderModel } from '../src/models/decoder.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { PpoTrainer, type PpoResult } from '../src/ppo/trainer.js';
import { trainableParams, criticParams } from '../src/ppo/models.js';
import { buildToyRewardModel, tempDir, toyConfig, writeToyPrompts } from './ppo_helpers.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';

const DATASETS = join(fixtureDir('gpt2'), '..', '..', '..', '..', 'datasets');

let dir: string;
let rmDir: string;
let prompts: string;
beforeAll(async () => {
  await initBackend('wasm', () => {});
  dir = tempDir('resume');
  rmDir = await buildToyRewardModel(join(dir, 'rm'));
  prompts = writeToyPrompts(dir);
});

function config(savePath: string) {
  return {
    ...toyConfig(rmDir, prompts, savePath), numEpisodes: 4, loraRank: 4, loraAlpha: 8, lr: 2e-3,
    pretrainDataset: [join(DATASETS, 'sft', 'alpaca_en_demo.json')], maxDatasetsSize: 16, ptxBatchSize: 2, ptxCoef: 0.5,
    klTarget: 0.5, klHorizon: 50, needOptimCkpt: true,
  };
}

/** Host copies of the trainable weights and optimizer moments. */
function snapshot(t: PpoTrainer) {
  const m = t.modelSet;
  const params = [...trainableParams(m.actor), ...criticParams(m.critic).map(([n, v]) => [`critic.${n}`, v] as const)];
  return new Map(params.map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
}

function stopAfter(episodes: number): { flag: InterruptFlag; onEpisode: (e: number) => void } {
  let stop = false;
  return {
    flag: { get requested() { return stop; }, signal: null, dispose() {} },
    onEpisode: (e) => {
      if (e >= episodes) stop = true;
    },
  };
}

describe('PPO with LoRA, ptx and adaptive KL', () => {
  it('shares bases, leaves them untouched, and resumes after Ctrl-C to the same state as a straight run', async () => {
    // 1. straight run
    const straightPath = join(dir, 'straight');
    const a = await PpoTrainer.create(config(straightPath), { log: () => {}, progressBar: false });
    const m = a.modelSet;
    expect(m.initial).toBe(m.actor);
    expect(m.reward.backbone).toBe(m.critic.backbone);
    expect(m.actor.lora).not.toBeNull();
    const baseBefore = new Map([...m.actor.params].map(([n, v]) => [n, Float32Array.from(v.dataSync())]));
    const straight = await a.train();
    expect(straight.history.every((h) => Number.isFinite(h['loss/ptx']!))).toBe(true);
    for (const [n, v] of m.actor.params) expect(Float32Array.from(v.dataSync())).toEqual(baseBefore.get(n));
    const straightState = snapshot(a);
    const straightKl = a.klCoef;
    expect(straightKl).not.toBe(0.02); // the adaptive controller moved β
    const actorLogits = tf.tidy(() => {
      const ids = tf.tensor2d([[5, 6, 7, 8, 9]], undefined, 'int32');
      return Array.from(m.actor.logits(m.actor.forward(ids).hidden).dataSync());
    });
    a.dispose();

    // The final directories are PEFT adapters naming their bases, and reload without flags.
    expect(existsSync(join(straightPath, 'adapter_config.json'))).toBe(true);
    expect(existsSync(join(straightPath, 'config.json'))).toBe(false);
    expect(JSON.parse(readFileSync(join(straightPath, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(fixtureDir('gpt2'));
    const reloaded = loadPretrained(straightPath).model;
    const reLogits = tf.tidy(() => Array.from(reloaded.logits(reloaded.forward(tf.tensor2d([[5, 6, 7, 8, 9]], undefined, 'int32')).hidden).dataSync()));
    expect(relErr(reLogits, actorLogits)).toBeLessThan(1e-6);
    reloaded.dispose();
    const critic = loadPretrained(join(straightPath, 'critic'));
    expect(critic.valueHead?.weight.shape).toEqual([1, 8]);
    critic.model.dispose();
    critic.valueHead!.dispose();

    // 2. the same run, stopped after episode 2 (as Ctrl-C does), then resumed
    const path = join(dir, 'stopped');
    const stop = stopAfter(2);
    const b = await PpoTrainer.create(config(path), { log: () => {}, progressBar: false, interrupt: stop.flag, onEpisode: stop.onEpisode });
    const part: PpoResult = await b.train();
    b.dispose();
    expect(part.interrupted).toBe(true);
    expect(part.episodes).toBe(2);
    expect(part.savedTo).toBe(join(path, 'checkpoint-2'));
    expect(existsSync(join(part.savedTo, 'optimizer.safetensors'))).toBe(true);
    const c = await PpoTrainer.create({ ...config(path), resume: part.savedTo }, { log: () => {}, progressBar: false });
    expect(c.episodesDone).toBe(2);
    const rest = await c.train();
    expect(rest.history.map((h) => h['reward/mean'])).toEqual(straight.history.slice(2).map((h) => h['reward/mean']));
    expect(c.klCoef).toBeCloseTo(straightKl, 12);
    const resumedState = snapshot(c);
    for (const [n, v] of straightState) expect(relErr(resumedState.get(n)!, v), n).toBeLessThan(1e-6);
    c.dispose();
    // The final save kept the earlier checkpoint and the logs beside the new model.
    expect(existsSync(join(path, 'checkpoint-2', 'trainer_state.json'))).toBe(true);
    expect(readFileSync(join(path, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
  }, 600_000);

  it('--merge_lora_weights writes full actor and critic directories', async () => {
    const savePath = join(dir, 'merged');
    const t = await PpoTrainer.create({ ...config(savePath), numEpisodes: 1, mergeLoraWeights: true, pretrainDataset: [] }, { log: () => {}, progressBar: false });
    await t.train();
    t.dispose();
    for (const d of [savePath, join(savePath, 'critic')]) {
      expect(existsSync(join(d, 'config.json'))).toBe(true);
      expect(existsSync(join(d, 'adapter_config.json'))).toBe(false);
    }
    const cfg = JSON.parse(readFileSync(join(savePath, 'config.json'), 'utf8'));
    expect(cfg.rlhf).toEqual({ kind: 'ppo_actor', prompt_template: 'plain' });
    const critic = loadPretrained(join(savePath, 'critic'));
    expect(critic.valueHead).not.toBeNull();
    critic.model.dispose();
    critic.valueHead!.dispose();
  }, 300_000);
});

describe('--ref_pretrain', () => {
  it('the actor starts from --pretrain and the KL reference is the other model; not with LoRA', async () => {
    // another model of the same family and vocabulary: the fixture's config with fresh weights
    const fixture = loadPretrained(fixtureDir('gpt2')).model;
    const other = DecoderModel.fromConfig(fixture.config, 99);
    const refDir = join(dir, 'ref');
    savePretrained(other, refDir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(fixtureDir('gpt2'), f))) cpSync(join(fixtureDir('gpt2'), f), join(refDir, f));
    const name = 'transformer.h.0.attn.c_attn.weight';
    const base = { ...toyConfig(rmDir, prompts, join(dir, 'ref-run')), numEpisodes: 1 };
    const t = await PpoTrainer.create({ ...base, refPretrain: refDir }, { log: () => {}, progressBar: false });
    const m = t.modelSet;
    expect(relErr(m.initial.params.get(name)!.dataSync(), other.params.get(name)!.dataSync())).toBe(0);
    expect(relErr(m.actor.params.get(name)!.dataSync(), fixture.params.get(name)!.dataSync())).toBe(0);
    t.dispose();
    fixture.dispose();
    other.dispose();
    await expect(PpoTrainer.create({ ...base, refPretrain: refDir, loraRank: 4 }, { log: () => {}, progressBar: false })).rejects.toThrow(/--ref_pretrain: with --lora_rank/);
  }, 300_000);
});
