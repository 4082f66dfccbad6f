/**
 * Training the reward model end to end on the gpt2 fixture (wasm backend: the cpu backend is far too slow for
 * training): it fits 256 real hh-rlhf pairs, it learns a synthetic rule that generalises to held-out pairs, the
 * checkpoint reloads with identical rewards, LoRA runs save a loadable adapter, Ctrl-C + --resume reproduces an
 * uninterrupted run exactly, and the CLI runs.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadPreferencePairs, getTemplate } from '../src/data/index.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { Rng } from '../src/engine/rng.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { LoraAdapter } from '../src/models/lora.js';
import { saveCheckpoint } from '../src/trainer/stage_checkpoint.js';
import {
  evaluatePairs, loadRewardModel, runRewardTraining, tokenizePreferencePairs, type RewardConfigInput,
} from '../src/reward/index.js';
import { fixtureDir } from './helpers/fixtures.js';

const HH = 'datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz';
const GPT2 = fixtureDir('gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'reward-train-'));
const quiet = { log: () => {}, progress: false } as const;
// The fixture models are tiny: wasm's XNNPACK threads cost more in synchronisation than they save (measured ~10x
// slower per step on 2 cores), so these tests use the single-threaded binary unless told otherwise.
process.env.RLHF_WASM_THREADS ??= '1';
/** Training tests run for tens of seconds on 2 idle cores; give a busy machine slack. */
const SLOW = 600_000;

function readMetrics(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
}

describe('hh-rlhf on the gpt2 fixture', () => {
  it('fits 256 pairs (train accuracy > 0.9) and the checkpoint reloads with identical rewards', async () => {
    const savePath = join(tmp, 'hh');
    const lines: string[] = [];
    // Evaluating on the training file itself measures how well the model fits it, with the in-memory weights.
    const cfg: RewardConfigInput = {
      pretrain: GPT2, dataset: HH, evalDataset: HH, maxDatasetsSize: 256, maxLen: 48, batchSize: 8, maxEpochs: 10,
      lr: 3e-3, warmupRatio: 0, savePath, backend: 'wasm', seed: 1,
    };
    const result = await runRewardTraining(cfg, { ...quiet, log: (l) => lines.push(l) });
    const last = result.epochs.at(-1)!;
    expect(result.interrupted).toBe(false);
    expect(last.eval!.accuracy).toBeGreaterThan(0.9);
    expect(last.eval!.margin).toBeGreaterThan(0);
    expect(result.epochs[0]!.eval!.loss).toBeGreaterThan(last.eval!.loss);

    // metrics.jsonl (and TensorBoard) got the training and the per-epoch eval keys; one summary line per epoch
    const metrics = readMetrics(savePath);
    expect(Object.keys(metrics[0]!)).toEqual(expect.arrayContaining(['train/loss', 'reward/accuracy', 'reward/margin', 'train/lr', 'time/pairs_per_s']));
    expect(metrics.filter((m) => 'eval/reward/accuracy' in m)).toHaveLength(10);
    expect(lines.filter((l) => /^epoch \d+\/10 \| train loss .* \| eval loss .* acc .* chosen .* rejected .* margin/.test(l))).toHaveLength(10);
    expect(readdirSync(join(savePath, 'logs')).some((f) => f.startsWith('events.out.tfevents.'))).toBe(true);

    // reload by path alone: the same rewards for the same 256 pairs
    const config = JSON.parse(readFileSync(join(savePath, 'config.json'), 'utf8'));
    expect(config.rlhf).toEqual({ kind: 'reward_model', reward_reduction: 'last', prompt_template: 'human_assistant' });
    const rm = loadRewardModel(savePath);
    const tok = await Tokenizer.fromDir(savePath);
    const { pairs } = await loadPreferencePairs(HH, { maxRecords: 256 });
    const tokenized = tokenizePreferencePairs(pairs, getTemplate('human_assistant'), tok, { maxLen: 48 }).pairs;
    const again = evaluatePairs(rm, tokenized, { padTokenId: tok.padTokenId! });
    expect(again.accuracy).toBe(last.eval!.accuracy);
    expect(again.chosen).toBeCloseTo(last.eval!.chosen, 5);
    expect(again.rejected).toBeCloseTo(last.eval!.rejected, 5);
    expect(again.loss).toBeCloseTo(last.eval!.loss, 5);
    rm.dispose();
  }, SLOW);
});

/**
 * A rule the model can learn: answers are random words, and the chosen one contains "banana" somewhere. Held-out
 * pairs use other random words in other orders, so only the rule transfers.
 */
function syntheticPairs(n: number, seed: number): string {
  const rng = new Rng(seed);
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran', 'far', 'away', 'green', 'tree', 'blue', 'sky', 'sun', 'rain'];
  const sentence = (k: number) => Array.from({ length: k }, () => words[rng.int(words.length)]!);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const prompt = `\n\nHuman: tell me about ${sentence(2).join(' ')}\n\nAssistant:`;
    const chosen = sentence(5 + rng.int(3));
    chosen.splice(rng.int(chosen.length + 1), 0, 'banana');
    const rejected = sentence(6 + rng.int(3));
    lines.push(JSON.stringify({ prompt, chosen: ' ' + chosen.join(' '), rejected: ' ' + rejected.join(' ') }));
  }
  return lines.join('\n') + '\n';
}

describe('a learnable synthetic preference', () => {
  it('reaches eval accuracy > 0.9 on held-out pairs', async () => {
    const dataset = join(tmp, 'banana.jsonl');
    writeFileSync(dataset, syntheticPairs(256, 3));
    const result = await runRewardTraining({
      pretrain: GPT2, dataset, evalRatio: 0.25, maxLen: 64, batchSize: 8, maxEpochs: 3, lr: 3e-3, warmupRatio: 0,
      savePath: join(tmp, 'banana'), backend: 'wasm', lossFn: 'log_exp', seed: 2,
    }, quiet);
    const ev = result.epochs.at(-1)!.eval!;
    expect(result.epochs.at(-1)!.train['reward/accuracy']).toBeGreaterThan(0.9);
    expect(ev.accuracy).toBeGreaterThan(0.9);
    expect(ev.chosen).toBeGreaterThan(ev.rejected);
  }, SLOW);
});

describe('LoRA, interrupt and resume', () => {
  const base = (savePath: string): RewardConfigInput => ({
    pretrain: GPT2, dataset: HH, test: true, maxLen: 32, batchSize: 8, maxEpochs: 1, lr: 2e-3, loraRank: 4,
    savePath, backend: 'wasm', seed: 5, needOptimCkpt: true,
  });

  it('an interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does', async () => {
    const straight = await runRewardTraining(base(join(tmp, 'straight')), quiet);
    expect(straight.steps).toBe(8); // 64 pairs / 8

    // the LoRA output: adapter + value head + marker, loadable by path with its base found through adapter_config
    const out = join(tmp, 'straight');
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'value_head.safetensors', 'rlhf_config.json', 'tokenizer.json']) {
      expect(existsSync(join(out, f))).toBe(true);
    }
    expect(existsSync(join(out, 'config.json'))).toBe(false);

    const stopAfter = (steps: number): InterruptFlag => {
      let polls = 0;
      return { get requested() { return ++polls >= steps; }, signal: null, dispose() {} };
    };
    // Tensors left behind by a run must not grow with its length (every step tidied): a 6-step run leaves what a
    // 3-step run leaves (model construction may leave a few, the same in both).
    const t0 = tf.memory().numTensors;
    await runRewardTraining(base(join(tmp, 'cut6')), { ...quiet, interrupt: stopAfter(6) });
    const t1 = tf.memory().numTensors;
    const cut = await runRewardTraining(base(join(tmp, 'cut')), { ...quiet, interrupt: stopAfter(3) });
    expect(tf.memory().numTensors - t1).toBe(t1 - t0);
    expect(cut.interrupted).toBe(true);
    expect(cut.steps).toBe(3);
    expect(cut.outputDir).toBe(join(tmp, 'cut', 'checkpoint-3'));
    const resumed = await runRewardTraining({ ...base(join(tmp, 'cut')), resume: cut.outputDir }, quiet);
    expect(resumed.steps).toBe(8);
    expect(existsSync(join(tmp, 'cut', 'checkpoint-3'))).toBe(true); // the final save keeps checkpoint dirs and logs
    expect(existsSync(join(tmp, 'cut', 'logs', 'metrics.jsonl'))).toBe(true);

    const a = loadRewardModel(out);
    const b = loadRewardModel(join(tmp, 'cut'));
    const ids = [[10, 20, 30, 40, 50, 60], [70, 80, 90, 0, 0, 0]];
    const mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]];
    const ra = a.scoreArrays(ids, mask);
    const rb = b.scoreArrays(ids, mask);
    ra.forEach((r, i) => expect(rb[i]!).toBeCloseTo(r, 5));
    expect(resumed.epochs.at(-1)!.eval!.accuracy).toBe(straight.epochs.at(-1)!.eval!.accuracy);
    a.dispose();
    b.dispose();

    // resuming with different data settings is refused, naming the flag
    await expect(runRewardTraining({ ...base(join(tmp, 'cut')), batchSize: 4, resume: cut.outputDir }, quiet)).rejects.toThrow(/--batch_size is 4 but the checkpoint was trained with 8/);
  }, SLOW);

  it('--pretrain a LoRA SFT output: its adapter is merged in, and the result is saved as full weights', async () => {
    // an SFT-style adapter directory (no value head) whose base is the fixture
    const { model } = loadPretrained(GPT2);
    model.lora = LoraAdapter.create(model.spec, { r: 2, alpha: 4, dropout: 0, targetModules: ['c_attn'] }, 9);
    for (const { B } of model.lora.modules.values()) B.assign(tf.randomNormal(B.shape, 0, 0.5, 'float32', 9));
    const sft = join(tmp, 'sft-adapter');
    await saveCheckpoint(sft, { model, tokenizer: await Tokenizer.fromDir(GPT2), mergeLora: false, baseModelPath: GPT2 });
    model.dispose();
    for (const loraRank of [0, 4]) {
      const lines: string[] = [];
      const savePath = join(tmp, `from-adapter-${loraRank}`);
      await runRewardTraining({ ...base(savePath), pretrain: sft, loraRank, maxEpochs: 1, batchSize: 16 }, { ...quiet, log: (l) => lines.push(l) });
      expect(lines).toContain('--pretrain holds a LoRA adapter: merged it into its base weights');
      expect(lines).toContain('no value head in the checkpoint: created a new one');
      expect(existsSync(join(savePath, 'config.json'))).toBe(true);
      expect(existsSync(join(savePath, 'adapter_config.json'))).toBe(false);
      loadRewardModel(savePath).dispose();
    }
  }, SLOW);

  it('--max_len beyond the model\'s positions is refused before training', async () => {
    await expect(runRewardTraining({ ...base(join(tmp, 'long')), maxLen: 512 }, quiet)).rejects.toThrow(/--max_len 512 exceeds the model's 64 positions/);
  }, SLOW);
});

describe('the CLI', () => {
  it('train_reward_model --test runs, prints epoch summaries and writes a reward model', async () => {
    const savePath = join(tmp, 'cli');
    const { stdout } = await promisify(execFile)('npx', [
      'tsx', 'src/cli/train_reward_model.ts', '--model', 'gpt2', '--pretrain', GPT2, '--dataset', HH, '--test', '--max_len', '32',
      '--batch_size', '16', '--max_epochs', '1', '--lr', '1e-3', '--loss_fn', 'log_exp', '--save_path', savePath, '--backend', 'wasm',
    ], { env: { ...process.env, CI: 'true' }, maxBuffer: 1 << 24 });
    expect(stdout).toMatch(/epoch 1\/1 \| train loss [\d.]+ acc [\d.]+ margin -?[\d.]+ \| eval loss/);
    expect(existsSync(join(savePath, 'model.safetensors'))).toBe(true);
    const rm = loadRewardModel(savePath);
    expect(rm.reduction).toBe('last');
    rm.dispose();
    const bad = promisify(execFile)('npx', ['tsx', 'src/cli/train_reward_model.ts', '--pretrain', GPT2, '--dataset', HH, '--save_path', savePath, '--loss_fn', 'hinge']);
    await expect(bad).rejects.toMatchObject({ stderr: expect.stringMatching(/--loss_fn.*hinge.*log_sig, log_exp/) });
  }, SLOW);
});
