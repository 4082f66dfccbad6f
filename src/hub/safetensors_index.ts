/**
 * `model.safetensors.index.json`, the map of a sharded checkpoint: `{"metadata"?: {...}, "weight_map": {tensor: shard
 * file}}`. The index comes from the same untrusted place as the weights, so it is validated before any shard is
 * opened: a well-formed object, and every shard a plain file name inside the model directory (no absolute path, no
 * `..`), so a hostile index cannot make the loader read files elsewhere.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { InputFileError, fileReadError } from './input_error.js';
import { readSafetensors, type LoadedTensor } from './safetensors.js';

export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Shard file -> the tensor names the index assigns to it, in the index's order. */
export type ShardPlan = Map<string, string[]>;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Parses an index's text (`file` names it in errors); shard names are checked to stay inside `file`'s directory. */
export function parseSafetensorsIndex(file: string, text: string): ShardPlan {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new InputFileError(file, `invalid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(parsed)) throw new InputFileError(file, 'expected a JSON object with a "weight_map"');
  if (parsed.metadata !== undefined && parsed.metadata !== null && !isPlainObject(parsed.metadata)) {
    throw new InputFileError(file, 'field "metadata" must be an object');
  }
  const map = parsed.weight_map;
  if (!isPlainObject(map)) throw new InputFileError(file, 'field "weight_map" must be an object of tensor name -> shard file');
  const plan: ShardPlan = new Map();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') {
      throw new InputFileError(file, `weight_map["${tensor}"] must be a shard file name, got ${JSON.stringify(shard) ?? 'nothing'}`);
    }
    checkShardName(file, tensor, shard);
    const names = plan.get(shard);
    if (names) names.push(tensor);
    else plan.set(shard, [tensor]);
  }
  if (plan.size === 0) throw new InputFileError(file, 'field "weight_map" is empty: the index names no tensor');
  return plan;
}

/** A shard is a relative path that stays inside the model directory. */
function checkShardName(file: string, tensor: string, shard: string): void {
  const why =
    shard === '' ? 'is empty'
    : path.isAbsolute(shard) || /^[A-Za-z]:/.test(shard) || shard.startsWith('\\') ? 'is an absolute path'
    : shard.split(/[\\/]/).includes('..') ? 'climbs out of the model directory with ".."'
    : shard.includes('\0') ? 'contains a NUL byte'
    : null;
  if (why) {
    throw new InputFileError(file, `weight_map["${tensor}"] = ${JSON.stringify(shard)} ${why}; shard files must lie inside the model directory`);
  }
}

/** Reads and validates the index file itself. */
export function readSafetensorsIndex(indexFile: string): ShardPlan {
  let bytes: Buffer;
  try {
    bytes = readFileSync(indexFile);
  } catch (e) {
    throw fileReadError(indexFile, e);
  }
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new InputFileError(indexFile, 'not valid UTF-8 text');
  }
  return parseSafetensorsIndex(indexFile, text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
}

/** Every tensor of a sharded checkpoint: each shard read once, holding exactly the tensors the index gives it. */
export function readShardedSafetensors(indexFile: string): Map<string, LoadedTensor> {
  const plan = readSafetensorsIndex(indexFile);
  const dir = path.dirname(indexFile);
  const out = new Map<string, LoadedTensor>();
  for (const [shard, names] of plan) {
    const shardFile = path.join(dir, shard);
    const wanted = new Set(names);
    if (!existsSync(shardFile)) throw new InputFileError(indexFile, `names shard ${shard}, which is missing from ${dir}`);
    const tensors = readSafetensors(shardFile, (n) => wanted.has(n)).tensors;
    for (const name of names) {
      const t = tensors.get(name);
      if (!t) throw new InputFileError(shardFile, `has no tensor "${name}", which ${indexFile} says it holds`);
      out.set(name, t);
    }
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
