import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  TRAINER_STATE_FILE,
  readTrainerState,
  recoverInterruptedWrite,
  resumeMismatches,
  writeDirAtomic,
  writeTrainerState,
  type TrainerState,
} from '../src/trainer/checkpoint_io.js';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'trainer-ckpt-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const ls = (dir: string) => fs.readdirSync(dir).sort();

describe('writeDirAtomic', () => {
  it('publishes what the callback wrote, from a temp dir beside the final one', async () => {
    const final = path.join(root, 'out', 'checkpoint-10');
    let seenTmp = '';
    const result = await writeDirAtomic(final, async (tmp) => {
      seenTmp = tmp;
      expect(path.dirname(tmp)).toBe(path.dirname(final)); // same filesystem, so rename is atomic
      expect(fs.existsSync(final)).toBe(false); // nothing visible until done
      fs.mkdirSync(path.join(tmp, 'sub'));
      fs.writeFileSync(path.join(tmp, 'sub', 'model.bin'), 'weights');
      fs.writeFileSync(path.join(tmp, 'config.json'), '{}');
      return 42;
    });
    expect(result).toBe(42);
    expect(fs.existsSync(seenTmp)).toBe(false);
    expect(fs.readFileSync(path.join(final, 'sub', 'model.bin'), 'utf8')).toBe('weights');
    expect(ls(path.dirname(final))).toEqual(['checkpoint-10']);
  });

  it('replaces an existing checkpoint and leaves nothing else behind', async () => {
    const final = path.join(root, 'latest');
    await writeDirAtomic(final, async (tmp) => fs.writeFileSync(path.join(tmp, 'a.txt'), 'old'));
    await writeDirAtomic(final, async (tmp) => fs.writeFileSync(path.join(tmp, 'b.txt'), 'new'));
    expect(ls(final)).toEqual(['b.txt']);
    expect(ls(root)).toEqual(['latest']);
  });

  it('keeps the previous checkpoint intact and removes the temp dir when the callback throws', async () => {
    const final = path.join(root, 'latest');
    await writeDirAtomic(final, async (tmp) => fs.writeFileSync(path.join(tmp, 'model.bin'), 'good'));
    await expect(
      writeDirAtomic(final, async (tmp) => {
        fs.writeFileSync(path.join(tmp, 'model.bin'), 'half-writ');
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    expect(fs.readFileSync(path.join(final, 'model.bin'), 'utf8')).toBe('good');
    expect(ls(root)).toEqual(['latest']);
  });
});

describe('recoverInterruptedWrite', () => {
  it('puts back a checkpoint moved aside by a crash between the renames and removes leftovers', async () => {
    const final = path.join(root, 'latest');
    // What a crash after step 1 of a publish leaves: the old copy aside, the new one still a temp dir.
    fs.mkdirSync(path.join(root, '.latest.old-1700000000000-12'));
    fs.writeFileSync(path.join(root, '.latest.old-1700000000000-12', 'model.bin'), 'good');
    fs.mkdirSync(path.join(root, '.latest.tmp-abc123'));
    fs.mkdirSync(path.join(root, 'other')); // not ours: untouched
    const report = await recoverInterruptedWrite(final);
    expect(report.restored).toBe('.latest.old-1700000000000-12');
    expect(report.removed).toEqual(['.latest.tmp-abc123']);
    expect(fs.readFileSync(path.join(final, 'model.bin'), 'utf8')).toBe('good');
    expect(ls(root)).toEqual(['latest', 'other']);
  });

  it('removes a stale aside copy when the new checkpoint was published', async () => {
    const final = path.join(root, 'latest');
    fs.mkdirSync(final);
    fs.mkdirSync(path.join(root, '.latest.old-1700000000000-12'));
    const report = await recoverInterruptedWrite(final);
    expect(report.restored).toBeUndefined();
    expect(ls(root)).toEqual(['latest']);
  });
});

describe('trainer_state.json', () => {
  const state: TrainerState = {
    global_step: 120,
    epoch: 1,
    step_in_epoch: 20,
    best_metric: 0.42,
    rng_state: { data: 123456789, dropout: 42 },
    args: { lr: 1e-5, model: 'gpt2' },
    log_history: Array.from({ length: 5 }, (_, i) => ({ step: i * 10, 'train/loss': 1 / (i + 1) })),
  };

  it('round-trips and keeps only the tail of the log history', async () => {
    await writeTrainerState(root, state, 3);
    const back = await readTrainerState(root);
    expect(back).toEqual({ ...state, log_history: state.log_history.slice(2) });
  });

  it('names the file and the field that is wrong', async () => {
    const file = path.join(root, TRAINER_STATE_FILE);
    fs.writeFileSync(file, JSON.stringify({ ...state, step_in_epoch: -1 }));
    await expect(readTrainerState(root)).rejects.toThrow(`${file}: field 'step_in_epoch' must be an integer >= 0`);
    fs.writeFileSync(file, JSON.stringify({ ...state, rng_state: { data: 'x' } }));
    await expect(readTrainerState(root)).rejects.toThrow(/field 'rng_state.data' must be an integer/);
    fs.writeFileSync(file, '{not json');
    await expect(readTrainerState(root)).rejects.toThrow(/trainer_state.json: cannot read trainer state/);
    await expect(writeTrainerState(root, { ...state, best_metric: 'x' as unknown as number })).rejects.toThrow(/best_metric/);
  });
});

describe('resumeMismatches', () => {
  const state = (args: Record<string, unknown>, world_size?: number): TrainerState => ({
    global_step: 3, epoch: 0, step_in_epoch: 3, best_metric: null, rng_state: {}, args, log_history: [], ...(world_size ? { world_size } : {}),
  });

  it('compares the batch as per-rank batch × ranks, so a run resumes across world sizes at the same global batch', () => {
    const fields = ['batchSize', 'seed'];
    expect(resumeMismatches(state({ batchSize: 2, seed: 1 }, 2), { batchSize: 4, seed: 1 }, fields, 1)).toEqual([]);
    expect(resumeMismatches(state({ batchSize: 4, seed: 1 }), { batchSize: 2, seed: 1 }, fields, 2)).toEqual([]);
    expect(resumeMismatches(state({ batchSize: 2, seed: 1 }, 2), { batchSize: 2, seed: 1 }, fields, 1)).toEqual([
      { field: 'batchSize', was: '2 × 2 ranks = 4', now: '2' },
    ]);
  });

  it('reports every other changed field as JSON, and a checkpoint without world_size counts as one rank', () => {
    const m = resumeMismatches(state({ batchSize: 4, seed: 1, dataset: ['a.jsonl'] }), { batchSize: 4, seed: 2, dataset: ['a.jsonl'] }, ['batchSize', 'seed', 'dataset'], 1);
    expect(m).toEqual([{ field: 'seed', was: '1', now: '2' }]);
  });

  it('refuses a malformed world_size in trainer_state.json', async () => {
    await expect(writeTrainerState(root, { ...state({}), world_size: 0 })).rejects.toThrow(/world_size/);
  });
});
