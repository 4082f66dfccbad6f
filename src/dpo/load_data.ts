/**
 * Reading a run's data as the config says: preference pairs (or, for kto, unpaired examples) from any reader's
 * file, shard folder or DatasetDict; held-out data from --eval_dataset, else the dataset's own `test` (or
 * `validation`) split, else an --eval_ratio split (seeded); `maxDatasetsSize` records per file; the small `test`
 * subset.
 */
import { heldOutSplit } from '../data/dataset_splits.js';
import { loadPreferencePairs, loadUnpairedExamples, type PreferencePair, type UnpairedExample } from '../data/preference.js';
import { splitTrainVal } from '../data/split.js';
import type { DpoConfig } from './config.js';
import { TEST_SUBSET } from './config.js';

export interface DpoData {
  /** Set for the paired losses. */
  pairs?: { train: PreferencePair[]; eval: PreferencePair[] };
  /** Set for kto. */
  unpaired?: { train: UnpairedExample[]; eval: UnpairedExample[] };
  notes: string[];
}

type Fields = Pick<DpoConfig, 'dataset' | 'evalDataset' | 'evalRatio' | 'maxDatasetsSize' | 'test' | 'skipBadRecords' | 'seed' | 'lossType'>;

async function readSplits<T>(c: Fields, read: (path: string, opts: { maxRecords?: number; split?: string }) => Promise<{ items: T[]; note: string }>): Promise<{ train: T[]; eval: T[]; notes: string[] }> {
  const notes: string[] = [];
  const cap = (n: number) => {
    const limit = [n, c.maxDatasetsSize].filter((x) => x > 0);
    return limit.length ? Math.min(...limit) : undefined;
  };
  const shipped = c.evalDataset ? undefined : heldOutSplit(c.dataset);
  const separateEval = c.evalDataset !== undefined || shipped !== undefined;
  const first = await read(c.dataset, { maxRecords: cap(c.test ? TEST_SUBSET.train + (separateEval ? 0 : TEST_SUBSET.eval) : 0), split: shipped ? 'train' : undefined });
  notes.push(first.note);
  let train: T[];
  let evalItems: T[];
  if (separateEval) {
    train = first.items;
    const ev = await read(c.evalDataset ?? c.dataset, { maxRecords: cap(c.test ? TEST_SUBSET.eval : 0), split: shipped });
    notes.push(`${ev.note}${shipped ? ` (its "${shipped}" split is the evaluation set; --eval_dataset overrides)` : ''}`);
    evalItems = ev.items;
  } else {
    const ratio = c.test ? TEST_SUBSET.eval / (TEST_SUBSET.train + TEST_SUBSET.eval) : c.evalRatio;
    const split = splitTrainVal(first.items, ratio, c.seed);
    train = split.train;
    evalItems = split.val;
  }
  if (c.test) train = train.slice(0, TEST_SUBSET.train);
  if (train.length === 0) throw new Error(`${c.dataset}: no training data left after the evaluation split (lower --eval_ratio)`);
  notes.push(`train ${train.length}, eval ${evalItems.length}`);
  return { train, eval: evalItems, notes };
}

export async function loadDpoData(c: Fields): Promise<DpoData> {
  const describe = (path: string, split: string | undefined, n: number, what: string, format: string, skipped: number, example?: string) =>
    `${path}${split ? `[${split}]` : ''}: ${n} ${what} (${format})${skipped ? `, ${skipped} bad records skipped, e.g. ${example}` : ''}`;
  if (c.lossType === 'kto') {
    const r = await readSplits(c, async (path, o) => {
      const x = await loadUnpairedExamples(path, { ...o, skipBadRecords: c.skipBadRecords });
      const note = describe(path, o.split, x.examples.length, 'examples', x.format === 'unpaired' ? 'unpaired' : `${x.format} pairs, each split into a desirable and an undesirable example`, x.skipped, x.skippedExamples[0]);
      return { items: x.examples, note };
    });
    return { unpaired: { train: r.train, eval: r.eval }, notes: r.notes };
  }
  const r = await readSplits(c, async (path, o) => {
    const x = await loadPreferencePairs(path, { ...o, skipBadRecords: c.skipBadRecords });
    return { items: x.pairs, note: describe(path, o.split, x.pairs.length, 'pairs', x.format, x.skipped, x.skippedExamples[0]) };
  });
  return { pairs: { train: r.train, eval: r.eval }, notes: r.notes };
}
