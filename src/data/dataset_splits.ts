/** Which named splits a dataset path holds (a DatasetDict save_to_disk directory or a shard folder); [] otherwise. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataError } from './location.js';
import { isShardFolder, shardFolderSplits } from './parquet_reader.js';

export function datasetSplits(path: string): string[] {
  if (!existsSync(path) || !statSync(path).isDirectory()) return [];
  const dictFile = join(path, 'dataset_dict.json');
  if (existsSync(dictFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(dictFile, 'utf8'));
    } catch (err) {
      throw new DataError({ file: dictFile }, `invalid JSON (${(err as Error).message})`);
    }
    const splits = (parsed as { splits?: unknown }).splits;
    if (!Array.isArray(splits) || !splits.every((s) => typeof s === 'string')) throw new DataError({ file: dictFile }, 'field "splits" must be a list of names');
    return splits as string[];
  }
  return isShardFolder(path) ? shardFolderSplits(path) : [];
}

/** The held-out split a dataset ships with, if any: `test`, else `validation`. */
export function heldOutSplit(path: string): string | undefined {
  const splits = datasetSplits(path);
  return ['test', 'validation', 'eval'].find((s) => splits.includes(s));
}
