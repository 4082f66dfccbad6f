/**
 * train_dpo on the shared loop controls: --max_steps ends the run inside an epoch, --logging_steps and --eval_steps
 * log at their steps (and at the last), --save_total_limit prunes checkpoint-<step> directories keeping the best,
 * --save_best keeps <save_path>/best by eval/rewards/accuracies, --lr_scheduler and --global_batch_size apply, the
 * old --log_steps still works, and a NaN run (--lr 1e10) stops naming the step and the metric, writing no model.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { DPO_BEST_METRIC, resolveDpoConfig, runDpoTraining, type DpoConfigInput } from '../src/dpo/index.js';
import { NonFiniteError } from '../src/trainer/nonfinite_guard.js';
import { listStepCheckpoints } from '../src/trainer/checkpoint_pruning.js';
import { fixtureDir } from './helpers/fixtures.js';

const DEMO = 'datasets/preference/dpo_en_demo.json';
const GPT2 = fixtureDir('gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'dpo-controls-'));
process.env.RLHF_WASM_THREADS ??= '1';

const metricLines = (dir: string) => readFileSync(join(dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
// 12 pairs, 3 held out, batches of 3: 3 steps an epoch
const base = (savePath: string, over: Partial<DpoConfigInput> = {}): DpoConfigInput => ({
  pretrain: GPT2, dataset: DEMO, maxDatasetsSize: 12, evalRatio: 0.25, maxLen: 32, batchSize: 3, maxEpochs: 3, lr: 1e-2, savePath, backend: 'wasm', seed: 2, ...over,
});

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('train_dpo loop controls', () => {
  it('--max_steps 5 across epochs, --logging_steps 2, --eval_steps 2, --save_steps 1 with --save_total_limit 1 and --save_best', async () => {
    const savePath = join(tmp, 'controls');
    const lines: string[] = [];
    const r = await runDpoTraining(base(savePath, {
      maxSteps: 5, loggingSteps: 2, evalSteps: 2, saveSteps: 1, saveTotalLimit: 1, saveBest: true, lrScheduler: 'linear', warmupRatio: 0,
    }), { progress: false, log: (l) => lines.push(l) });
    expect(r.steps).toBe(5);
    const m = metricLines(savePath);
    // logged every 2 steps, at the end of the first epoch (step 3) and at the last step
    expect(m.filter((x) => 'train/loss' in x).map((x) => x.step)).toEqual([2, 3, 4, 5]);
    const evals = m.filter((x) => 'eval/loss' in x);
    expect(evals.map((x) => x.step)).toEqual([2, 4, 5]);
    expect(evals.every((x) => DPO_BEST_METRIC in x)).toBe(true);
    // linear decay to 0 at step 5
    const lrs = m.filter((x) => 'train/lr' in x).map((x) => x['train/lr']!);
    expect(lrs[3]).toBeLessThan(lrs[0]!);
    // checkpoints 1..4 written (5 is the final model); one kept besides the best evaluation's
    const best = evals.reduce((a, x) => (x[DPO_BEST_METRIC]! > a[DPO_BEST_METRIC]! ? x : a));
    // the newest, and the best evaluation's checkpoint when that was step 2 (evaluations at 2 and 4 precede their saves)
    const kept = listStepCheckpoints(savePath).map((c) => c.step);
    expect(kept.at(-1)).toBe(4);
    expect(kept.length).toBeLessThanOrEqual(2);
    for (const gone of [1, 3]) expect(kept).not.toContain(gone);
    expect(lines.some((l) => /removed .*checkpoint-1 \(--save_total_limit 1\)/.test(l))).toBe(true);
    expect(JSON.parse(readFileSync(join(savePath, 'best', 'trainer_state.json'), 'utf8')).global_step).toBe(best.step);
    expect(JSON.parse(readFileSync(join(savePath, 'trainer_state.json'), 'utf8'))).toMatchObject({ best_metric: best[DPO_BEST_METRIC], best_step: best.step });
    expect(lines.at(-1)).toBe(`best ${DPO_BEST_METRIC} ${best[DPO_BEST_METRIC]!.toFixed(4)} at step ${best.step}`);
  }, 300_000);

  it('the old --log_steps and eval at epoch ends without --eval_steps; --global_batch_size derives accumulation', async () => {
    const savePath = join(tmp, 'old');
    const lines: string[] = [];
    await runDpoTraining(base(savePath, { logSteps: 1, maxEpochs: 1, globalBatchSize: 6, microBatchSize: 3 }), { progress: false, log: (l) => lines.push(l) });
    expect(lines).toContain('global batch 6 = micro-batch 3 × 2 accumulation step(s) × 1 rank(s)');
    const m = metricLines(savePath);
    // 9 train pairs: 3 micro-batches, steps of 2 (the epoch's last step is short)
    expect(m.filter((x) => 'train/loss' in x).map((x) => x.step)).toEqual([1, 2]);
    expect(m.filter((x) => 'eval/loss' in x).map((x) => x.step)).toEqual([2]);
  }, 300_000);

  it('refuses --eval_steps without held-out data, and a --metric_for_best it does not log', () => {
    expect(() => resolveDpoConfig({ ...base('x'), loggingSteps: 0 })).toThrow('--logging_steps: must be an integer >= 1, got 0');
    return Promise.all([
      expect(runDpoTraining(base(join(tmp, 'noeval'), { evalRatio: 0, evalSteps: 2 }), { progress: false, log: () => {} })).rejects.toThrow(/--eval_steps 2: there is no held-out data/),
      expect(runDpoTraining(base(join(tmp, 'badmetric'), { saveBest: true, metricForBest: 'bleu' }), { progress: false, log: () => {} })).rejects.toThrow(/--metric_for_best bleu: train_dpo does not compute it/),
    ]);
  }, 300_000);

  it('--lr 1e10 stops with NonFiniteError naming the step and metric; only the checkpoints before it are on disk', async () => {
    const savePath = join(tmp, 'nan');
    const err = await runDpoTraining(base(savePath, { lr: 1e10, evalRatio: 0, saveSteps: 1, needOptimCkpt: true }), { progress: false, log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    const e = err as NonFiniteError;
    expect(e.message).toMatch(new RegExp(`^step ${e.step}: train/(loss|grad_norm) is .*was not written`));
    expect(listStepCheckpoints(savePath).every((c) => c.step < e.step)).toBe(true);
    expect(readdirSync(savePath).filter((n) => !n.startsWith('checkpoint-') && n !== 'logs')).toEqual([]);
    expect(existsSync(join(savePath, 'model.safetensors'))).toBe(false);
  }, 300_000);
});
