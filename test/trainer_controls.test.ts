import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deriveBatch } from '../src/trainer/batch_size.js';
import { checkpointsToPrune, listStepCheckpoints, pruneCheckpoints } from '../src/trainer/checkpoint_pruning.js';
import { BestTracker, LoopControls, dueEvery, epochsFor, inferGreaterIsBetter, resolveMetricName, totalStepsFor, type LoopControlsConfig } from '../src/trainer/loop_controls.js';

describe('deriveBatch: --global_batch_size G, --micro_batch_size m, ranks W', () => {
  it('derives accumulation = G / (m × W) on 1 and 2 ranks', () => {
    const flags = { globalBatchSize: 32, microBatchSize: 8, batchSize: 4, accumulationSteps: 1 };
    expect(deriveBatch(flags, 1)).toMatchObject({ batchSize: 8, accumulationSteps: 4, globalBatchSize: 32 });
    expect(deriveBatch(flags, 2)).toMatchObject({ batchSize: 8, accumulationSteps: 2, globalBatchSize: 32 });
    expect(deriveBatch(flags, 2).note).toBe('global batch 32 = micro-batch 8 × 2 accumulation step(s) × 2 rank(s)');
    // without --micro_batch_size, --batch_size is the micro-batch
    expect(deriveBatch({ globalBatchSize: 12, batchSize: 3, accumulationSteps: 1 }, 2).accumulationSteps).toBe(2);
  });

  it('keeps --batch_size × --accumulation_steps without G', () => {
    expect(deriveBatch({ batchSize: 4, accumulationSteps: 3 }, 2)).toEqual({ batchSize: 4, accumulationSteps: 3, globalBatchSize: 24, note: null });
  });

  it('an impossible combination names the three numbers', () => {
    expect(() => deriveBatch({ globalBatchSize: 30, microBatchSize: 8, batchSize: 1, accumulationSteps: 1 }, 2)).toThrow(
      /--global_batch_size 30 .*--micro_batch_size 8 × 2 rank\(s\)/,
    );
    expect(() => deriveBatch({ globalBatchSize: 4, microBatchSize: 8, batchSize: 1, accumulationSteps: 1 }, 1)).toThrow(/--global_batch_size 4/);
    expect(() => deriveBatch({ globalBatchSize: 32, microBatchSize: 8, batchSize: 1, accumulationSteps: 2 }, 1)).toThrow(/--accumulation_steps 2 disagrees/);
  });
});

describe('step budget and cadence', () => {
  it('--max_steps overrides the epochs', () => {
    expect(totalStepsFor(undefined, 120)).toBe(120);
    expect(totalStepsFor(7, 120)).toBe(7);
    expect(epochsFor(250, 100)).toBe(3);
    expect(() => totalStepsFor(0, 10)).toThrow(/--max_steps/);
  });

  it('every n steps and at the last one', () => {
    const due = [...Array(10).keys()].map((i) => i + 1).filter((s) => dueEvery(s, 4, 10));
    expect(due).toEqual([4, 8, 10]);
    expect(dueEvery(5, 0, 10)).toBe(false);
  });

  it('LoopControls: eval at --eval_steps and the end; without it the stage default; saves before the last step only', () => {
    const ctx = { savePath: '/tmp/x', totalSteps: 10, stage: 'test', log: () => {}, evalMetrics: ['eval/loss'] };
    const base: LoopControlsConfig = { evalSteps: 3, loggingSteps: 2, saveSteps: 5, saveTotalLimit: 0, saveBest: false };
    const c = new LoopControls(base, ctx);
    const steps = [...Array(10).keys()].map((i) => i + 1);
    expect(steps.filter((s) => c.evalDue(s, s === 5))).toEqual([3, 6, 9, 10]);
    expect(steps.filter((s) => c.logDue(s))).toEqual([2, 4, 6, 8, 10]);
    expect(steps.filter((s) => c.saveDue(s))).toEqual([5]);
    const byEpoch = new LoopControls({ ...base, evalSteps: 0 }, ctx);
    expect(steps.filter((s) => byEpoch.evalDue(s, s === 4 || s === 8))).toEqual([4, 8, 10]);
  });

  it('a stage without evaluation refuses --eval_steps and --save_best with its reason', () => {
    const ctx = { savePath: '/tmp/x', totalSteps: 10, stage: 'test', log: () => {}, evalMetrics: [], noEval: 'no held-out data' };
    const base: LoopControlsConfig = { evalSteps: 0, loggingSteps: 1, saveSteps: 0, saveTotalLimit: 0, saveBest: false };
    expect(() => new LoopControls({ ...base, evalSteps: 5 }, ctx)).toThrow('--eval_steps 5: no held-out data');
    expect(() => new LoopControls({ ...base, saveBest: true }, ctx)).toThrow(/--save_best.*no held-out data/);
    expect(() => new LoopControls({ ...base, saveBest: true, metricForBest: 'bleu' }, { ...ctx, evalMetrics: ['eval/loss'] })).toThrow(
      /--metric_for_best bleu: test does not compute it \(it computes: eval\/loss\)/,
    );
  });
});

describe('best checkpoint choice', () => {
  it('greater-is-better follows the metric: losses and perplexity lower, accuracies higher', () => {
    expect(inferGreaterIsBetter('eval/loss')).toBe(false);
    expect(inferGreaterIsBetter('eval/perplexity')).toBe(false);
    expect(inferGreaterIsBetter('eval/reward/accuracy')).toBe(true);
    expect(inferGreaterIsBetter('reward/mean')).toBe(true);
    expect(resolveMetricName('reward/accuracy', ['eval/loss', 'eval/reward/accuracy'], 'rm')).toBe('eval/reward/accuracy');
  });

  it('keeps the step of the best value; ties and NaN do not replace it', () => {
    const low = new BestTracker('eval/loss', false);
    const seen = [[250, 2.1], [500, 1.9], [750, 1.95], [1000, 1.9], [1250, NaN]].map(([s, v]) => low.offer(s!, { 'eval/loss': v! }));
    expect(seen).toEqual([true, true, false, false, false]);
    expect([low.value, low.step]).toEqual([1.9, 500]);
    const high = new BestTracker('eval/reward/accuracy', true);
    for (const [s, v] of [[1, 0.5], [2, 0.7], [3, 0.6]] as const) high.offer(s, { 'eval/reward/accuracy': v });
    expect(high.step).toBe(2);
    expect(() => high.offer(4, { 'eval/loss': 1 })).toThrow(/not among/);
  });

  it('--save_best writes <save_path>/best on a new best only, and records it for trainer_state.json', async () => {
    const written: string[] = [];
    const c = new LoopControls(
      { evalSteps: 1, loggingSteps: 1, saveSteps: 0, saveTotalLimit: 0, saveBest: true },
      { savePath: '/tmp/run', totalSteps: 3, stage: 'test', log: () => {}, evalMetrics: ['eval/loss'] },
    );
    for (const [s, v] of [[1, 3], [2, 2], [3, 2.5]] as const) await c.recordEval(s, { 'eval/loss': v }, async (d) => void written.push(`${d}@${s}`));
    expect(written).toEqual(['/tmp/run/best@1', '/tmp/run/best@2']);
    expect(c.bestState()).toEqual({ best_metric: 2, best_step: 2, best_model_checkpoint: '/tmp/run/best' });
    expect(c.bestSummary()).toBe('best eval/loss 2.0000 at step 2');
  });
});

describe('--save_total_limit pruning', () => {
  const ckpts = (steps: number[]) => steps.map((step) => ({ step, dir: `/run/checkpoint-${step}` }));

  it('removes the oldest beyond the limit', () => {
    expect(checkpointsToPrune(ckpts([10, 20, 30, 40]), 2, []).map((c) => c.step)).toEqual([10, 20]);
    expect(checkpointsToPrune(ckpts([10, 20]), 2, [])).toEqual([]);
    expect(checkpointsToPrune(ckpts([10, 20, 30]), 0, [])).toEqual([]);
  });

  it('never the best one nor the resumed one; never the newest', () => {
    // best at 10, resumed from 20: 30 and 40 go... except the newest (50)
    expect(checkpointsToPrune(ckpts([10, 20, 30, 40, 50]), 2, ['/run/checkpoint-10', '/run/checkpoint-20']).map((c) => c.step)).toEqual([30, 40]);
    // limit 1 with an old best: best and newest stay
    expect(checkpointsToPrune(ckpts([10, 20, 30]), 1, ['/run/checkpoint-10']).map((c) => c.step)).toEqual([20]);
  });

  it('works on a directory, by step number (not by name order), leaving other directories alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prune-'));
    for (const n of ['checkpoint-9', 'checkpoint-10', 'checkpoint-100', 'best', 'logs']) mkdirSync(join(dir, n));
    expect(listStepCheckpoints(dir).map((c) => c.step)).toEqual([9, 10, 100]);
    const removed = pruneCheckpoints(dir, 1, [join(dir, 'checkpoint-9')]);
    expect(removed).toEqual([join(dir, 'checkpoint-10')]);
    for (const n of ['checkpoint-9', 'checkpoint-100', 'best', 'logs']) expect(existsSync(join(dir, n))).toBe(true);
  });
});

describe('LoopControls.afterCheckpoint on a directory', () => {
  it('keeps the resumed checkpoint, the best step and the newest under --save_total_limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'controls-'));
    const c = new LoopControls(
      { evalSteps: 2, loggingSteps: 1, saveSteps: 2, saveTotalLimit: 1, saveBest: false },
      { savePath: dir, totalSteps: 20, resumeDir: join(dir, 'checkpoint-2'), stage: 'test', log: () => {}, evalMetrics: ['eval/loss'] },
    );
    await c.recordEval(4, { 'eval/loss': 1 }, async () => {});
    for (const s of [2, 4, 6]) mkdirSync(c.checkpointDir(s));
    expect(c.afterCheckpoint()).toEqual([]);
    mkdirSync(c.checkpointDir(8));
    expect(c.afterCheckpoint()).toEqual([join(dir, 'checkpoint-6')]);
  });
});

describe('stages without a held-out evaluation', () => {
  it('train_prompts refuses --eval_steps, saying what it logs instead', async () => {
    const { resolvePpoConfig } = await import('../src/ppo/config.js');
    const base = { pretrain: 'a', rmPath: 'b', promptDataset: 'c', savePath: 'd' };
    expect(() => resolvePpoConfig({ ...base, evalSteps: 10 })).toThrow(/--eval_steps: train_prompts has no held-out evaluation.*--save_best/);
    expect(resolvePpoConfig(base).metricForBest).toBe('reward/mean');
  });
});
