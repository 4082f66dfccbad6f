/**
 * train_dpo's prompt template and finished checkpoints: `--prompt_template auto` (the default) takes the template the
 * policy was trained with, else its chat template, else alpaca, and records the one it used; --resume of a run that
 * already finished reports nothing to do, as the other trainers do, and a resumed auto run keeps its template.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { runDpoTraining, type DpoConfigInput } from '../src/dpo/index.js';
import { fixtureDir } from './helpers/fixtures.js';

const DEMO = 'datasets/preference/dpo_en_demo.json';
const tmp = mkdtempSync(join(tmpdir(), 'dpo-template-'));
process.env.RLHF_WASM_THREADS ??= '1';
const base = (savePath: string, over: Partial<DpoConfigInput> = {}): DpoConfigInput => ({
  pretrain: fixtureDir('gpt2'), dataset: DEMO, maxDatasetsSize: 4, evalRatio: 0, maxLen: 32, batchSize: 2, maxSteps: 2, lr: 1e-3, savePath, backend: 'wasm', seed: 1, ...over,
});
const recorded = (dir: string) => (JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as { args: { promptTemplate: string } }).args.promptTemplate;

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('train_dpo --prompt_template auto', () => {
  it('alpaca for a model without a chat template, the chat template where the tokenizer has one; the name is recorded', async () => {
    const lines: string[] = [];
    const plain = join(tmp, 'plain');
    await runDpoTraining(base(plain), { progress: false, log: (l) => lines.push(l) });
    expect(lines).toContain('prompt template: alpaca (the model has no chat template)');
    expect(recorded(plain)).toBe('alpaca');

    lines.length = 0;
    const chat = join(tmp, 'chat');
    await runDpoTraining(base(chat, { pretrain: fixtureDir('qwen2'), maxSteps: 1 }), { progress: false, log: (l) => lines.push(l) });
    expect(lines.some((l) => l.startsWith("prompt template: the model's chat_template"))).toBe(true);
    expect(recorded(chat)).toBe('chat_template');

    // a named template is used as given
    lines.length = 0;
    await runDpoTraining(base(join(tmp, 'named'), { promptTemplate: 'human_assistant', maxSteps: 1 }), { progress: false, log: (l) => lines.push(l) });
    expect(lines).toContain('prompt template: human_assistant');
  }, 300_000);
});

describe('train_dpo --resume', () => {
  it('a checkpoint mid-run continues under auto with its template; the finished run is nothing to do (exit 1 from the CLI)', async () => {
    const out = join(tmp, 'resume');
    await runDpoTraining(base(out, { saveSteps: 1, needOptimCkpt: true, promptTemplate: 'plain' }), { progress: false, log: () => {} });
    // resumed with auto from the checkpoint of step 1: the template it recorded (plain) is taken, so nothing mismatches
    const lines: string[] = [];
    const again = await runDpoTraining(base(join(tmp, 'again'), { resume: join(out, 'checkpoint-1') }), { progress: false, log: (l) => lines.push(l) });
    expect(again.steps).toBe(2);
    expect(lines.some((l) => l.startsWith(`prompt template: plain (the one ${join(out, 'checkpoint-1')} was trained with)`))).toBe(true);
    await expect(runDpoTraining(base(join(tmp, 'more'), { resume: out }), { progress: false, log: () => {} }))
      .rejects.toThrow(/--resume .*resume: nothing to do: the checkpoint at step 2 already finished the run of 2 steps/);
    const cli = promisify(execFile)('npx', ['tsx', 'src/cli/train_dpo.ts', '--pretrain', fixtureDir('gpt2'), '--dataset', DEMO, '--max_datasets_size', '4',
      '--eval_ratio', '0', '--max_len', '32', '--batch_size', '2', '--max_steps', '2', '--seed', '1', '--lr', '1e-3', '--save_path', join(tmp, 'cli'), '--resume', out, '--backend', 'wasm']);
    await expect(cli).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/nothing to do: the checkpoint at step 2 already finished the run of 2 steps/) });
  }, 300_000);
});
