/**
 * train_dpo end to end (wasm backend, single-threaded: the models are tiny): it learns on real pairs (accuracy,
 * margin, chosen log-probs above the reference's), the LoRA reference is the adapter-off model, precomputed
 * reference log-probs change nothing, an interrupted run resumes to the same weights, and the CLI trains kto and
 * reference-free simpo into directories the model loader reads.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { loadPretrained, readWeights } from '../src/models/pretrained.js';
import { completionLogProbArrays } from '../src/models/sequence_logprobs.js';
import { collateDpoPairs, referenceRowLogps, runDpoTraining, type DpoConfigInput, type DpoPair } from '../src/dpo/index.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { fixtureDir } from './helpers/fixtures.js';

const DEMO = 'datasets/preference/dpo_en_demo.json';
const GPT2 = fixtureDir('gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'dpo-train-'));
const quiet = { log: () => {}, progress: false } as const;
process.env.RLHF_WASM_THREADS ??= '1';
const SLOW = 600_000;

function readMetrics(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('DPO learns', () => {
  it('on real pairs with the default model: accuracy > 0.9, the margin grows, chosen log-probs rise above the reference', async () => {
    const savePath = join(tmp, 'learn');
    const lines: string[] = [];
    // Evaluating on the training file measures the fit, with the in-memory weights.
    const result = await runDpoTraining({
      pretrain: 'models/tiny-chat', dataset: DEMO, evalDataset: DEMO, maxDatasetsSize: 16, maxLen: 48, batchSize: 8, maxEpochs: 3,
      lr: 1e-3, warmupRatio: 0, evalSteps: 1, logSteps: 1, savePath, backend: 'wasm', seed: 1,
    }, { ...quiet, log: (l) => lines.push(l) });
    const evals = readMetrics(savePath).filter((m) => 'eval/loss' in m);
    const first = evals[0]!;
    const last = evals.at(-1)!;
    expect(evals.length).toBeGreaterThanOrEqual(6); // --eval_steps 1: after every step
    expect(last['eval/rewards/accuracies']).toBeGreaterThan(0.9);
    expect(last['eval/rewards/margins']).toBeGreaterThan(first['eval/rewards/margins']!);
    expect(last['eval/rewards/chosen']).toBeGreaterThan(0); // β·(log π − log π_ref) of the chosen answers
    expect(last['eval/loss']).toBeLessThan(first['eval/loss']!);
    const train = readMetrics(savePath).find((m) => 'train/loss' in m)!;
    expect(Object.keys(train)).toEqual(expect.arrayContaining([
      'train/loss', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected',
      'logits/chosen', 'logits/rejected', 'train/lr', 'train/grad_norm', 'time/pairs_per_s',
    ]));
    expect(train['rewards/margins']).toBe(0); // the first step: policy = reference
    expect(lines.filter((l) => /^epoch \d\/3 \| train loss .* \| eval loss .* acc .* margin/.test(l))).toHaveLength(3);
    expect(result.steps).toBe(6);
    // an HF model directory the loader (inference, convert, the other stages) reads
    const { model } = loadPretrained(savePath);
    expect(model.config.modelType).toBe('llama');
    model.dispose();
  }, SLOW);
});

describe('the reference', () => {
  it('with LoRA is the same model with the adapter off', () => {
    const { model: base } = loadPretrained(GPT2);
    const { model: adapted } = loadPretrained(GPT2, { lora: join(GPT2, 'lora') }); // lora_B non-zero
    const pairs: DpoPair[] = [{ chosen: { prompt: [5, 6, 7], answer: [8, 9] }, rejected: { prompt: [5, 6, 7], answer: [10, 11, 12] } }];
    const batch = collateDpoPairs(pairs, 0);
    const want = completionLogProbArrays(base, batch.sequences).sums;
    const ref = referenceRowLogps({ kind: 'adapter_off', model: adapted }, batch)!;
    expect(ref).toEqual(want); // exactly the base model
    const on = completionLogProbArrays(adapted, batch.sequences).sums;
    expect(Math.abs(on[0]! - want[0]!)).toBeGreaterThan(1e-3); // while the policy itself is adapted
    expect(adapted.loraEnabled).toBe(true); // and the adapter is back on
    base.dispose();
    adapted.dispose();
  });

  it('a LoRA run keeps no second model, starts at policy = reference, and saves a PEFT adapter', async () => {
    const savePath = join(tmp, 'lora');
    const lines: string[] = [];
    await runDpoTraining({ pretrain: GPT2, dataset: DEMO, maxDatasetsSize: 8, evalRatio: 0, maxLen: 32, batchSize: 4, loraRank: 4, lr: 1e-2, logSteps: 1, savePath, backend: 'wasm' }, { ...quiet, log: (l) => lines.push(l) });
    expect(lines.some((l) => /reference: the policy with its LoRA adapter off/.test(l))).toBe(true);
    const m = readMetrics(savePath);
    expect(m[0]!['rewards/chosen']).toBe(0);
    expect(m[0]!['train/loss']).toBeCloseTo(Math.log(2), 6);
    expect(existsSync(join(savePath, 'adapter_model.safetensors'))).toBe(true);
    const { model } = loadPretrained(savePath);
    expect(model.lora).not.toBeNull();
    model.dispose();
  }, SLOW);

  it('--precompute_ref_log_probs trains as scoring the reference every step does (to float rounding)', async () => {
    const base = (savePath: string): DpoConfigInput => ({ pretrain: GPT2, dataset: DEMO, maxDatasetsSize: 8, evalRatio: 0.25, maxLen: 32, batchSize: 3, lr: 1e-2, logSteps: 1, savePath, backend: 'wasm' });
    const lines: string[] = [];
    const a = await runDpoTraining(base(join(tmp, 'live')), quiet);
    const b = await runDpoTraining({ ...base(join(tmp, 'pre')), precomputeRefLogProbs: true }, { ...quiet, log: (l) => lines.push(l) });
    expect(lines.some((l) => /reference log-probs precomputed for 8 items .* the reference is freed/.test(l))).toBe(true);
    // the same numbers up to float rounding (the reference was scored in batches of another size, so other padding)
    // (accuracies compare rewards strictly, and at the first step, policy = reference, they are ties that rounding breaks)
    const close = (x: Record<string, number>, y: Record<string, number>, skip: string[] = []) => {
      expect(Object.keys(x).sort()).toEqual(Object.keys(y).sort());
      for (const k of Object.keys(y)) if (!k.startsWith('time/') && !skip.includes(k)) expect(Math.abs(x[k]! - y[k]!), k).toBeLessThan(1e-5 * Math.max(1, Math.abs(y[k]!)));
    };
    close(b.epochs[0]!.train, a.epochs[0]!.train, ['rewards/accuracies']);
    close(b.epochs[0]!.eval!, a.epochs[0]!.eval!);
  }, SLOW);
});

describe('interrupt and resume', () => {
  it('an interrupted run (with accumulation) resumed from its checkpoint ends with the same weights as an uninterrupted one', async () => {
    const base = (savePath: string): DpoConfigInput => ({ pretrain: GPT2, dataset: DEMO, maxDatasetsSize: 8, evalRatio: 0, maxLen: 32, batchSize: 2, accumulationSteps: 2, maxEpochs: 2, lr: 1e-2, savePath, backend: 'wasm', seed: 3 });
    const straight = await runDpoTraining(base(join(tmp, 'straight')), quiet);
    let polls = 0;
    const stopAfter: InterruptFlag = { get requested() { return ++polls >= 3; }, signal: null, dispose() {} };
    const cut = await runDpoTraining(base(join(tmp, 'cut')), { ...quiet, interrupt: stopAfter });
    expect(cut.interrupted).toBe(true);
    expect(cut.steps).toBe(3);
    const resumed = await runDpoTraining({ ...base(join(tmp, 'cut')), resume: cut.outputDir }, quiet);
    expect(resumed.steps).toBe(straight.steps);
    const w1 = readWeights(join(tmp, 'straight'));
    const w2 = readWeights(join(tmp, 'cut'));
    for (const [name, t] of w1) expect(Array.from(w2.get(name)!.data), name).toEqual(Array.from(t.data));
    await expect(runDpoTraining({ ...base(join(tmp, 'cut')), beta: 0.5, resume: cut.outputDir }, quiet)).rejects.toThrow(/--beta is 0.5 but the checkpoint was trained with 0.1/);
  }, SLOW);
});

describe('the CLI', () => {
  const run = promisify(execFile);
  it('trains kto (unpaired, KL baseline) and reference-free simpo into loadable model directories', async () => {
    const out = join(tmp, 'kto');
    const env = { ...process.env, RLHF_WASM_THREADS: '1' };
    const { stdout } = await run('npx', ['tsx', 'src/cli/train_dpo.ts', '--pretrain', GPT2, '--dataset', DEMO, '--max_datasets_size', '4', '--eval_ratio', '0',
      '--max_len', '32', '--batch_size', '4', '--loss_type', 'kto', '--desirable_weight', '1.33', '--save_path', out, '--backend', 'wasm', '--log_steps', '1'], { env });
    expect(stdout).toMatch(/8 examples \(sharegpt pairs, each split into a desirable and an undesirable example\)/);
    const m = readMetrics(out)[0]!;
    expect(Object.keys(m)).toEqual(expect.arrayContaining(['rewards/chosen', 'rewards/rejected', 'rewards/margins', 'objective/kl', 'time/examples_per_s']));
    loadPretrained(out).model.dispose();
    const simpo = join(tmp, 'simpo');
    const r = await run('npx', ['tsx', 'src/cli/train_dpo.ts', '--pretrain', GPT2, '--dataset', DEMO, '--max_datasets_size', '4', '--eval_ratio', '0',
      '--max_len', '32', '--batch_size', '2', '--loss_type', 'simpo', '--beta', '2', '--simpo_gamma', '0.5', '--save_path', simpo, '--backend', 'wasm'], { env });
    expect(r.stdout).toMatch(/loss simpo is reference-free: no reference model loaded/);
    loadPretrained(simpo).model.dispose();
    await expect(run('npx', ['tsx', 'src/cli/train_dpo.ts', '--pretrain', GPT2, '--dataset', DEMO, '--save_path', simpo, '--loss_type', 'kto', '--batch_size', '1'], { env }))
      .rejects.toMatchObject({ stderr: expect.stringMatching(/--batch_size: kto estimates its KL baseline .* use --batch_size 2 or more/) });
  }, SLOW);
});
