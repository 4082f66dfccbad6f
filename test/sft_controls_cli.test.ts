/** One short train_sft run through the CLI exercising the shared controls on nanoGPT token files. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { linearWithWarmup } from '../src/trainer/schedule.js';
import { REPO, SHAKESPEARE } from './sft_helpers.js';

const tsx = join(REPO, 'node_modules', '.bin', 'tsx');
const run = (cmd: string, args: string[]) => promisify(execFile)(tsx, [join(REPO, 'src', 'cli', `${cmd}.ts`), ...args], { maxBuffer: 1 << 24 });

it('train_sft --max_steps --eval_steps --save_total_limit --save_best --global_batch_size on train.bin/val.bin', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sft-controls-'));
  writeFileSync(join(dir, 'input.txt'), readFileSync(SHAKESPEARE, 'utf8').slice(0, 20_000));
  await run('prepare', [join(dir, 'input.txt'), '--tokenizer', 'char', '--output_dir', join(dir, 'data')]);
  const out = join(dir, 'out');
  const { stderr } = await run('train_sft', [
    '--from_config', 'gpt2:n_layer=1,n_head=2,n_embd=16', '--tokenizer', join(dir, 'data'),
    '--dataset', join(dir, 'data', 'train.bin'), '--eval_dataset', join(dir, 'data', 'val.bin'), '--eval_iters', '2',
    '--max_len', '16', '--global_batch_size', '4', '--micro_batch_size', '2', '--max_steps', '6', '--max_epochs', '5',
    '--lr', '1e-2', '--lr_scheduler', 'linear', '--warmup_steps', '2', '--warmup_start', 'one',
    '--eval_steps', '2', '--logging_steps', '3', '--save_steps', '2', '--save_total_limit', '1', '--save_best',
    '--backend', 'cpu', '--save_path', out,
  ]);
  expect(stderr).toContain('global batch 4 = micro-batch 2 × 2 accumulation step(s) × 1 rank(s)');
  const records = readFileSync(join(out, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  // eval before training, then every 2 steps and at the end; training metrics every 3 steps (and with each eval)
  expect(records.filter((r) => 'eval/loss' in r).map((r) => r.step)).toEqual([0, 2, 4, 6]);
  expect(records.filter((r) => 'train/loss' in r).map((r) => r.step)).toEqual([2, 3, 4, 6]);
  // train/lr shows the schedule: the update after k steps uses linear(k) (warm-up 2 counted from one, to 0 at step 6)
  const lrs = records.filter((x) => 'train/lr' in x);
  for (const r of lrs) {
    expect(r['train/lr']).toBeCloseTo(linearWithWarmup(r.step! - 1, { totalSteps: 6, warmupSteps: 2, maxLr: 1e-2, warmupStart: 'one' }), 12);
  }
  expect(lrs[0]!.step).toBe(2);
  expect(lrs[0]!['train/lr']).toBeCloseTo(1e-2 * 2 / 3, 12); // the 2nd update: lr·(1+1)/(2+1), not transformers' lr·1/2
  // the best evaluation (after training started) is kept in best/ and named in trainer_state.json
  const evals = records.filter((r) => 'eval/loss' in r && r.step! > 0);
  const best = evals.reduce((a, b) => (b['eval/loss']! < a['eval/loss']! ? b : a));
  const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8')) as Record<string, unknown>;
  expect(state.best_step).toBe(best.step);
  expect(state.best_metric).toBeCloseTo(best['eval/loss']!, 12);
  expect(existsSync(join(out, 'best', 'model.safetensors'))).toBe(true);
  expect((JSON.parse(readFileSync(join(out, 'best', 'trainer_state.json'), 'utf8')) as { global_step: number }).global_step).toBe(best.step);
  expect(stderr).toContain(`best eval/loss ${best['eval/loss']!.toFixed(4)} at step ${best.step}`);
  // checkpoints at 2 and 4; the limit of 1 keeps the newest, and the best one if it is among them
  const kept = readdirSync(out).filter((n) => n.startsWith('checkpoint-')).sort();
  expect(kept).toEqual(best.step === 2 ? ['checkpoint-2', 'checkpoint-4'] : ['checkpoint-4']);
}, 120_000);
