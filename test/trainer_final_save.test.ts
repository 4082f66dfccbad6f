/**
 * The final save into save_path never moves the run's checkpoint-* and logs/ subdirectories, and a crash at each of
 * its points is repaired by recoverSaveDir (the crash states are built by hand here; the fault-injection suite kills
 * real runs). The non-finite guard's rules, on hand-made steps.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { recoverSaveDir, STAGING_DIR, writeIntoDir } from '../src/trainer/final_save.js';
import { allFinite, NonFiniteError, NonFiniteGuard } from '../src/trainer/nonfinite_guard.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'final-save-'));
const read = (p: string) => readFileSync(p, 'utf8');

/** A save_path as a run leaves it: a previous final model, two checkpoints, logs. */
function runDir(): string {
  const dir = join(tmp(), 'out');
  for (const sub of ['checkpoint-1', 'checkpoint-2', 'logs', 'critic']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'checkpoint-1', 'model.safetensors'), 'ckpt1');
  writeFileSync(join(dir, 'checkpoint-2', 'model.safetensors'), 'ckpt2');
  writeFileSync(join(dir, 'logs', 'metrics.jsonl'), '{"step":1}\n');
  writeFileSync(join(dir, 'critic', 'model.safetensors'), 'old critic');
  writeFileSync(join(dir, 'model.safetensors'), 'old model');
  writeFileSync(join(dir, 'stale.json'), 'only the old model had this');
  writeFileSync(join(dir, 'NOTES.md'), 'the user\'s own file');
  return dir;
}

const writeNew = async (tmpDir: string) => {
  writeFileSync(join(tmpDir, 'model.safetensors'), 'new model');
  writeFileSync(join(tmpDir, 'config.json'), '{}');
  mkdirSync(join(tmpDir, 'critic'));
  writeFileSync(join(tmpDir, 'critic', 'model.safetensors'), 'new critic');
};

function expectSubdirsKept(dir: string): void {
  expect(read(join(dir, 'checkpoint-1', 'model.safetensors'))).toBe('ckpt1');
  expect(read(join(dir, 'checkpoint-2', 'model.safetensors'))).toBe('ckpt2');
  expect(read(join(dir, 'logs', 'metrics.jsonl'))).toBe('{"step":1}\n');
}

function expectNewModel(dir: string): void {
  expect(read(join(dir, 'model.safetensors'))).toBe('new model');
  expect(read(join(dir, 'critic', 'model.safetensors'))).toBe('new critic');
  expect(existsSync(join(dir, 'stale.json'))).toBe(false);
  expect(existsSync(join(dir, STAGING_DIR))).toBe(false);
  expectSubdirsKept(dir);
}

describe('writeIntoDir', () => {
  it('replaces the model files and the directories it writes, keeps every other subdirectory in place', async () => {
    const dir = runDir();
    await writeIntoDir(dir, writeNew);
    expectNewModel(dir);
    expect(readdirSync(dir).sort()).toEqual(['NOTES.md', 'checkpoint-1', 'checkpoint-2', 'config.json', 'critic', 'logs', 'model.safetensors']);
  });

  it('a failing write leaves the directory as it was', async () => {
    const dir = runDir();
    await expect(writeIntoDir(dir, async (t) => {
      writeFileSync(join(t, 'model.safetensors'), 'half');
      throw new Error('disk full');
    })).rejects.toThrow('disk full');
    expect(read(join(dir, 'model.safetensors'))).toBe('old model');
    expect(existsSync(join(dir, STAGING_DIR))).toBe(false);
    expectSubdirsKept(dir);
  });

  it('crash before the journal: recovery discards the staged files, the old model stays', async () => {
    const dir = runDir();
    mkdirSync(join(dir, STAGING_DIR, 'new'), { recursive: true });
    writeFileSync(join(dir, STAGING_DIR, 'new', 'model.safetensors'), 'new model');
    const notes = await recoverSaveDir(dir);
    expect(notes.join('\n')).toMatch(/unfinished final save/);
    expect(read(join(dir, 'model.safetensors'))).toBe('old model');
    expect(existsSync(join(dir, STAGING_DIR))).toBe(false);
    expectSubdirsKept(dir);
  });

  it('crash after the journal, at any point of the renames: recovery completes the new model', async () => {
    // Stage a commit, then replay the renames by hand up to each cut point, and recover from there.
    for (const cut of ['none moved', 'critic aside', 'critic moved', 'all moved']) {
      const dir = runDir();
      const staging = join(dir, STAGING_DIR);
      mkdirSync(join(staging, 'new'), { recursive: true });
      mkdirSync(join(staging, 'old'), { recursive: true });
      await writeNew(join(staging, 'new'));
      writeFileSync(join(staging, 'journal.json'), JSON.stringify({ entries: ['config.json', 'critic', 'model.safetensors'], remove: ['stale.json'] }));
      const { renameSync } = await import('node:fs');
      if (cut !== 'none moved') renameSync(join(dir, 'critic'), join(staging, 'old', 'critic'));
      if (cut === 'critic moved' || cut === 'all moved') renameSync(join(staging, 'new', 'critic'), join(dir, 'critic'));
      if (cut === 'all moved') {
        renameSync(join(staging, 'new', 'model.safetensors'), join(dir, 'model.safetensors'));
        renameSync(join(staging, 'new', 'config.json'), join(dir, 'config.json'));
      }
      const notes = await recoverSaveDir(dir);
      expect(notes.join('\n'), cut).toMatch(/completed a final save/);
      expectNewModel(dir);
    }
  });

  it('moves back what an earlier version parked in .<save_path>.keep-* and restores an interrupted checkpoint write', async () => {
    const dir = runDir();
    const parent = join(dir, '..');
    const keep = join(parent, '.out.keep-abc');
    mkdirSync(join(keep, 'checkpoint-0'), { recursive: true });
    writeFileSync(join(keep, 'checkpoint-0', 'model.safetensors'), 'ckpt0');
    // checkpoint-2 was being replaced: moved aside, the new copy not yet renamed into place
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, 'checkpoint-2'), join(dir, '.checkpoint-2.old-123-4'));
    mkdirSync(join(dir, '.checkpoint-2.tmp-xyz'));
    const notes = await recoverSaveDir(dir);
    expect(notes.length).toBe(2);
    expect(read(join(dir, 'checkpoint-0', 'model.safetensors'))).toBe('ckpt0');
    expect(existsSync(keep)).toBe(false);
    expectSubdirsKept(dir);
    expect(readdirSync(dir).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});

describe('NonFiniteGuard', () => {
  const ctx = { savePath: 'out', log: () => {} };
  const w = () => [tf.tensor1d([1, 2, 3])];

  it('stops on a non-finite metric, naming the step, the metric and the last checkpoint', () => {
    const g = new NonFiniteGuard({}, ctx);
    expect(g.check(1, { 'train/loss': 2 }, w(), 'train/loss')).toBe('ok');
    g.checkpointSaved(1, 'out/checkpoint-1');
    let err: unknown;
    try {
      g.check(2, { 'train/loss': 2, 'train/grad_norm': NaN }, w(), 'train/loss');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as NonFiniteError).step).toBe(2);
    expect((err as NonFiniteError).metric).toBe('train/grad_norm');
    expect(String((err as Error).message)).toMatch(/step 2: train\/grad_norm is NaN.*out was not written.*out\/checkpoint-1 \(step 1\)/);
  });

  it('stops on non-finite weights even with a skip budget', () => {
    const g = new NonFiniteGuard({ skipNonfiniteSteps: 5 }, ctx);
    expect(() => g.check(1, { 'train/loss': 1 }, [tf.tensor1d([1, Infinity])])).toThrow(/trainable weights.*never skipped/);
    expect(allFinite([tf.tensor1d([1, NaN])])).toBe(false);
    expect(allFinite([tf.tensor1d([1e30, -1e30])])).toBe(true);
  });

  it('--skip_nonfinite_steps N lets N bad steps pass in total, then stops', () => {
    const g = new NonFiniteGuard({ skipNonfiniteSteps: 2 }, ctx);
    expect(g.check(1, { 'train/loss': NaN }, w(), 'train/loss')).toBe('skipped');
    expect(g.check(2, { 'train/loss': 3 }, w(), 'train/loss')).toBe('ok');
    expect(g.check(3, { 'train/loss': Infinity }, w(), 'train/loss')).toBe('skipped');
    expect(() => g.check(4, { 'train/loss': NaN }, w(), 'train/loss')).toThrow(/step 4.*used up/);
  });

  it('stops when the loss exceeds k × max(running median, 1); the floor spares small losses; 0 turns it off', () => {
    const g = new NonFiniteGuard({ lossSpikeFactor: 10 }, ctx);
    for (const [i, l] of [2.0, 1.8, 1.9].entries()) g.check(i + 1, { 'train/loss': l }, w(), 'train/loss');
    expect(g.check(4, { 'train/loss': 18 }, w(), 'train/loss')).toBe('ok'); // < 10 × 1.9
    expect(() => g.check(5, { 'train/loss': 25 }, w(), 'train/loss')).toThrow(/step 5: train\/loss is 25 \(the loss exploded: above 10 × max\(median 1\.950/);
    const small = new NonFiniteGuard({}, ctx);
    for (let i = 1; i <= 5; i++) small.check(i, { 'train/loss': 0.01 }, w(), 'train/loss');
    expect(small.check(6, { 'train/loss': 5 }, w(), 'train/loss')).toBe('ok'); // 500 × the median, but under 10 × 1
    const off = new NonFiniteGuard({ lossSpikeFactor: 0 }, ctx);
    off.check(1, { 'train/loss': 1 }, w(), 'train/loss');
    expect(off.check(2, { 'train/loss': 1e9 }, w(), 'train/loss')).toBe('ok');
    expect(() => new NonFiniteGuard({ lossSpikeFactor: 0.5 }, ctx)).toThrow(/--loss_spike_factor/);
  });
});
