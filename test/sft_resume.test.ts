/**
 * Resume is exact: N steps straight equal N/2 steps, an interrupt checkpoint, `--resume`, and the rest (weights compared
 * tensor by tensor). LoRA trains only the adapter, saves it as a PEFT adapter (or merged), and resumes exactly too,
 * with LoRA dropout on, so the dropout stream must be restored as well.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { readSafetensors } from '../src/hub/safetensors.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { SftTrainer, trainSft, type SftConfigInput } from '../src/sft/index.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { relErr } from './helpers/fixtures.js';
import { gpt2Config, logSink, tempDir, writeNumbersJsonl } from './sft_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** An interrupt that fires once the trainer has taken `afterSteps` optimizer steps. */
function stopAfter(afterSteps: number, trainer: () => SftTrainer | undefined): InterruptFlag {
  return {
    get requested() {
      return (trainer()?.optimization.globalStep ?? 0) >= afterSteps;
    },
    signal: null,
    dispose() {},
  };
}

/** Straight run, interrupted run, resumed run; returns the dirs of the straight and resumed final outputs. */
async function straightVsResumed(config: (work: string) => SftConfigInput, stopAt: number) {
  const straightWork = tempDir('straight');
  await trainSft(config(straightWork), { log: () => {}, progress: false });

  const work = tempDir('resumed');
  let first: SftTrainer | undefined;
  const flag = stopAfter(stopAt, () => first);
  first = await SftTrainer.create(config(work), { log: () => {}, progress: false, interrupt: flag });
  const interrupted = await first.train().finally(() => first!.dispose());
  expect(interrupted.interrupted).toBe(true);
  expect(interrupted.steps).toBe(stopAt);
  expect(interrupted.outputDir).toBe(join(work, 'out', `checkpoint-${stopAt}`));
  expect(existsSync(join(interrupted.outputDir, 'optimizer.safetensors'))).toBe(true);
  expect(existsSync(join(work, 'out', 'trainer_state.json'))).toBe(false); // no final model yet

  const { lines, log } = logSink();
  const resumed = await trainSft({ ...config(work), resume: interrupted.outputDir }, { log, progress: false });
  expect(resumed.interrupted).toBe(false);
  expect(lines.some((l) => l.startsWith(`resumed from ${interrupted.outputDir} at step ${stopAt}`))).toBe(true);
  // The final save keeps the checkpoint directories that live inside save_path.
  expect(existsSync(join(interrupted.outputDir, 'trainer_state.json'))).toBe(true);
  return { straight: join(straightWork, 'out'), resumed: join(work, 'out') };
}

function expectSameTensors(fileA: string, fileB: string): void {
  const a = readSafetensors(fileA).tensors;
  const b = readSafetensors(fileB).tensors;
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [name, t] of a) {
    expect(relErr(b.get(name)!.data, t.data), name).toBeLessThan(1e-6);
  }
}

describe('--resume', () => {
  it('N/2 steps + interrupt checkpoint + resume gives the weights of N straight steps (mid-epoch, with accumulation)', async () => {
    // 9 train samples, batches of 2 -> 5 per epoch; 2 per step -> 7 steps over 3 epochs; step 3 ends mid-epoch 2.
    const config = (work: string) =>
      gpt2Config(work, {
        dataset: [writeNumbersJsonl(work, 12)], maxDatasetsSize: undefined, batchSize: 2, accumulationSteps: 2, maxEpochs: 3,
        evalRatio: 0.25, lr: 3e-3, warmupRatio: 0.2, weightDecay: 0.01,
      });
    const { straight, resumed } = await straightVsResumed(config, 3);
    expectSameTensors(join(straight, 'model.safetensors'), join(resumed, 'model.safetensors'));
    const history = (dir: string) =>
      (JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as { log_history: Record<string, number>[] }).log_history;
    const [h1, h2] = [history(straight), history(resumed)];
    expect(h2.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    h1.forEach((r, i) => expect(h2[i]!['train/loss']).toBeCloseTo(r['train/loss']!, 5));
  });

  it('a signal handler gets to run between steps: the loop stops at the next step and saves with optimizer state', async () => {
    const work = tempDir('signal');
    const flag = { requested: false, signal: null, dispose() {} };
    const trainer = await SftTrainer.create(gpt2Config(work, { dataset: [writeNumbersJsonl(work, 4)], maxDatasetsSize: undefined, batchSize: 2, maxEpochs: 2 }), {
      log: () => {}, progress: false, interrupt: flag,
    });
    setImmediate(() => (flag.requested = true)); // as onInterrupt's handler would, from the event loop
    const result = await trainer.train().finally(() => trainer.dispose());
    expect(result.interrupted).toBe(true);
    expect(result.steps).toBe(1);
    expect(existsSync(join(work, 'out', 'checkpoint-1', 'optimizer.safetensors'))).toBe(true);
  });

  it('refuses a checkpoint without optimizer state, or one written with other data options', async () => {
    const work = tempDir('resume-bad');
    const base = gpt2Config(work, { dataset: [writeNumbersJsonl(work, 4)], maxDatasetsSize: undefined, batchSize: 1, maxEpochs: 1, saveSteps: 2 });
    await trainSft(base, { log: () => {}, progress: false });
    const ckpt = join(work, 'out', 'checkpoint-2');
    await expect(trainSft({ ...base, savePath: join(work, 'b'), resume: ckpt }, { log: () => {} })).rejects.toThrow(
      /no optimizer\.safetensors.*--need_optim_ckpt.*--pretrain/,
    );
    await trainSft({ ...base, needOptimCkpt: true }, { log: () => {}, progress: false });
    await expect(trainSft({ ...base, batchSize: 2, savePath: join(work, 'b'), resume: ckpt }, { log: () => {} })).rejects.toThrow(
      /batchSize was 1, now 2/,
    );
    expect(existsSync(join(work, 'b'))).toBe(false);
  });
});

describe('LoRA', () => {
  const loraConfig = (work: string, over: Partial<SftConfigInput> = {}) =>
    gpt2Config(work, { dataset: [writeNumbersJsonl(work, 6)], maxDatasetsSize: undefined, batchSize: 2, maxEpochs: 2, loraRank: 4, loraAlpha: 8, lr: 1e-2, ...over });

  it('trains only the adapter (base weights bit-unchanged), saves a PEFT adapter that reloads to the same logits', async () => {
    const work = tempDir('lora');
    const trainer = await SftTrainer.create(loraConfig(work), { log: () => {}, progress: false });
    try {
      const baseBefore = new Map([...trainer.model.params].map(([n, v]) => [n, v.dataSync().slice()]));
      await trainer.train();
      for (const [name, v] of trainer.model.params) {
        expect(Buffer.from(v.dataSync().buffer).equals(Buffer.from(baseBefore.get(name)!.buffer)), name).toBe(true);
      }
      const bNorm = trainer.model.lora!.trainableVariables().filter((v) => v.name.includes('lora_B')).reduce((s, v) => s + tf.norm(v).dataSync()[0]!, 0);
      expect(bNorm).toBeGreaterThan(0);

      const out = join(work, 'out');
      expect(existsSync(join(out, 'adapter_config.json'))).toBe(true);
      expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
      expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
      const reloaded = loadPretrained(out).model;
      expect(reloaded.lora).not.toBeNull();
      const ids = tf.tensor2d([[5, 17, 42, 99, 7, 300]], undefined, 'int32');
      const mine = trainer.model.logits(trainer.model.forward(ids).hidden);
      const theirs = reloaded.logits(reloaded.forward(ids).hidden);
      expect(relErr(theirs.dataSync(), mine.dataSync())).toBeLessThan(1e-6);
      tf.dispose([ids, mine, theirs]);
      reloaded.dispose();
    } finally {
      trainer.dispose();
    }
  });

  it('--merge_lora_weights writes full weights with the adapter folded in', async () => {
    const work = tempDir('lora-merge');
    const trainer = await SftTrainer.create(loraConfig(work, { maxEpochs: 1, mergeLoraWeights: true }), { log: () => {}, progress: false });
    try {
      await trainer.train();
      const out = join(work, 'out');
      expect(existsSync(join(out, 'adapter_config.json'))).toBe(false);
      const merged = loadPretrained(out).model;
      expect(merged.lora).toBeNull();
      const ids = tf.tensor2d([[5, 17, 42, 99, 7, 300]], undefined, 'int32');
      const mine = trainer.model.logits(trainer.model.forward(ids).hidden);
      const theirs = merged.logits(merged.forward(ids).hidden);
      expect(relErr(theirs.dataSync(), mine.dataSync())).toBeLessThan(1e-5);
      tf.dispose([ids, mine, theirs]);
      merged.dispose();
    } finally {
      trainer.dispose();
    }
  });

  it('resumes exactly, LoRA dropout stream included', async () => {
    const { straight, resumed } = await straightVsResumed((work) => loraConfig(work, { loraDropout: 0.1 }), 2);
    expectSameTensors(join(straight, 'adapter_model.safetensors'), join(resumed, 'adapter_model.safetensors'));
  });
});
