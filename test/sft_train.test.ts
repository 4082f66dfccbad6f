/**
 * SFT on real alpaca data with the gpt2 fixture: eval loss goes down, the saved directory reloads to the same logits,
 * prompt tokens carry label -100, metrics.jsonl/TensorBoard are written, memory stays flat.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { getTemplate, IGNORE_INDEX, loadSftSamples, type ChatSample } from '../src/data/index.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { prepareChatData, SftTrainer } from '../src/sft/index.js';
import { fixtureDir, relErr } from './helpers/fixtures.js';
import { ALPACA_EN, gpt2Config, logSink, tempDir, writeNumbersJsonl } from './sft_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('SFT on alpaca_en_demo with the gpt2 fixture', () => {
  it('30 steps lower eval loss; the saved dir reloads to the same logits; metrics and events are written', async () => {
    const work = tempDir('train');
    const { lines, log } = logSink();
    const trainer = await SftTrainer.create(
      gpt2Config(work, { maxDatasetsSize: 36, evalRatio: 0.2, maxLen: 48, batchSize: 1, maxEpochs: 2, lr: 3e-3 }),
      { log, progress: false },
    );
    try {
      expect(trainer.totalSteps).toBe(30);
      const before = trainer.evaluate()!;
      const result = await trainer.train();
      expect(result.steps).toBe(30);
      expect(result.interrupted).toBe(false);
      const after = result.evals[result.evals.length - 1]!;
      expect(after.step).toBe(30);
      expect(after.loss).toBeLessThan(before.loss - 0.5);
      expect(after.perplexity).toBeCloseTo(Math.exp(after.loss), 6);
      expect(lines.some((l) => l.includes('saved the model to'))).toBe(true);

      // One metrics object per optimizer step, with the required keys; eval at each epoch end (steps 15 and 30).
      const out = join(work, 'out');
      const rows = readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
      // Step 0 holds the eval before training; then one row per optimizer step.
      expect(rows[0]!.step).toBe(0);
      expect(rows[0]!['eval/loss']).toBeCloseTo(before.loss, 5);
      const records = rows.slice(1);
      expect(records.map((r) => r.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      for (const r of records) {
        for (const key of ['train/loss', 'train/lr', 'train/grad_norm', 'train/tokens_per_s', 'train/epoch']) {
          expect(typeof r[key], key).toBe('number');
        }
        expect(r['train/tokens_per_s']).toBeGreaterThan(0);
      }
      expect(records[14]!['train/epoch']).toBe(1);
      expect(records.filter((r) => 'eval/loss' in r).map((r) => r.step)).toEqual([15, 30]);
      expect(readdirSync(join(out, 'logs')).some((f) => f.startsWith('events.out.tfevents.'))).toBe(true);

      // The saved directory reloads (weights + tokenizer) and gives the in-memory model's logits.
      const reloaded = loadPretrained(out).model;
      const tok = await Tokenizer.fromDir(out);
      const ids = tf.tensor2d([tok.encode('Give three tips for staying healthy.').slice(0, 20)], undefined, 'int32');
      const mine = trainer.model.logits(trainer.model.forward(ids).hidden);
      const theirs = reloaded.logits(reloaded.forward(ids).hidden);
      expect(relErr(theirs.dataSync(), mine.dataSync())).toBeLessThan(1e-6);
      tf.dispose([ids, mine, theirs]);
      reloaded.dispose();
      const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8')) as { global_step: number };
      expect(state.global_step).toBe(30);
    } finally {
      trainer.dispose();
    }
  });

  it('alpaca template: the prompt tokens carry label -100, the response (and EOS) its own ids', async () => {
    const tokenizer = await Tokenizer.fromDir(fixtureDir('gpt2'));
    const work = tempDir('labels');
    const data = await prepareChatData(tokenizer, {
      dataset: [ALPACA_EN], evalDataset: [], evalRatio: 0, maxDatasetsSize: 5, maxLen: 4096, promptTemplate: 'alpaca',
      skipBadRecords: false, cacheDir: join(work, 'cache'), seed: 1,
    });
    const raw = (await loadSftSamples(ALPACA_EN, { maxRecords: 5 })).samples as ChatSample[];
    expect(data.train).toHaveLength(5);
    const template = getTemplate('alpaca');
    raw.forEach((sample, i) => {
      const segs = template.render(sample.messages, { alpaca: sample.alpaca });
      const prompt = segs.filter((s) => !s.train).map((s) => s.text).join('');
      expect(segs[0]!.text.startsWith('Below is an instruction that describes a task')).toBe(true);
      const promptLen = tokenizer.encode(prompt, { addSpecialTokens: false }).length;
      const { inputIds, labels } = data.train[i]!;
      expect(labels.slice(0, promptLen).every((l) => l === IGNORE_INDEX)).toBe(true);
      expect(labels.slice(promptLen)).toEqual(inputIds.slice(promptLen));
      expect(inputIds[inputIds.length - 1]).toBe(tokenizer.eosTokenId);
      expect(tokenizer.decode(inputIds.slice(promptLen, -1))).toBe(sample.messages[sample.messages.length - 1]!.content);
    });
  });

  it('tf.memory().numTensors stays flat over 20 training steps', async () => {
    const work = tempDir('mem');
    const data = writeNumbersJsonl(work, 12);
    const trainer = await SftTrainer.create(gpt2Config(work, { dataset: [data], maxDatasetsSize: undefined, batchSize: 1, maxEpochs: 3, evalRatio: 0.25 }), {
      log: () => {},
      progress: false,
    });
    try {
      trainer.trainStep(); // AdamW creates its moments on the first step
      trainer.evaluate();
      const start = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) trainer.trainStep();
      trainer.evaluate();
      expect(tf.memory().numTensors).toBe(start);
    } finally {
      trainer.dispose();
    }
    expect(existsSync(join(work, 'out'))).toBe(false);
  });
});
