// Hub-id resolution against a fake HF cache in a temp dir; downloads go through a fake HubClient (never the network).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type HubClient,
  hubCacheDir,
  parseModelRef,
  repoFolderName,
  resolvePretrained,
} from '../src/hub/hf_cache.js';

const MAIN = 'a'.repeat(40);
const V1 = 'b'.repeat(40);
const ENV_KEYS = [
  'HF_HUB_CACHE',
  'HUGGINGFACE_HUB_CACHE',
  'HF_HOME',
  'XDG_CACHE_HOME',
  'HF_HUB_OFFLINE',
  'TRANSFORMERS_OFFLINE',
] as const;

let tmp: string;
let savedEnv: Record<string, string | undefined>;

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hf-cache-test-'));
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const key of ENV_KEYS) delete process.env[key];
  process.env.HF_HUB_OFFLINE = '1'; // a bug here must fail, never reach the network
  process.env.HF_HUB_CACHE = path.join(tmp, 'cache');
});

afterEach(async () => {
  for (const key of ENV_KEYS) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
  await rm(tmp, { recursive: true, force: true });
});

/** Writes models--org--name/refs/<ref> and snapshots/<commit>/<files>, as huggingface_hub lays them out. */
async function cacheModel(
  cacheDir: string,
  repoId: string,
  commit: string,
  opts: { ref?: string; files?: string[] } = {},
): Promise<string> {
  const repoDir = path.join(cacheDir, repoFolderName(repoId));
  if (opts.ref !== undefined) {
    await mkdir(path.dirname(path.join(repoDir, 'refs', opts.ref)), { recursive: true });
    await writeFile(path.join(repoDir, 'refs', opts.ref), commit);
  }
  const snapshot = path.join(repoDir, 'snapshots', commit);
  await mkdir(snapshot, { recursive: true });
  for (const file of opts.files ?? ['config.json']) await writeFile(path.join(snapshot, file), '{}');
  return snapshot;
}

describe('resolvePretrained from the cache', () => {
  it('returns a local directory as is, and rejects missing paths and files', async () => {
    const dir = path.join(tmp, 'local-model');
    await mkdir(dir);
    expect(await resolvePretrained(dir)).toBe(dir);
    await expect(resolvePretrained(path.join(tmp, 'nope'))).rejects.toThrow(/No such model directory/);
    await writeFile(path.join(tmp, 'file'), '');
    await expect(resolvePretrained(path.join(tmp, 'file'))).rejects.toThrow(/is a file/);
  });

  it('follows refs/main to the snapshot, for plain and org/name ids', async () => {
    const cache = path.join(tmp, 'cache');
    const gpt2 = await cacheModel(cache, 'gpt2', MAIN, { ref: 'main' });
    const opt = await cacheModel(cache, 'facebook/opt-125m', V1, { ref: 'main' });
    expect(gpt2).toBe(path.join(cache, 'models--gpt2', 'snapshots', MAIN));
    expect(await resolvePretrained('gpt2')).toBe(gpt2);
    expect(await resolvePretrained('facebook/opt-125m')).toBe(opt);
    expect(opt).toContain(path.join('models--facebook--opt-125m', 'snapshots'));
  });

  it('resolves an explicit branch, a commit hash, and a ref path like refs/pr/1', async () => {
    const cache = path.join(tmp, 'cache');
    await cacheModel(cache, 'facebook/opt-125m', MAIN, { ref: 'main' });
    const v1 = await cacheModel(cache, 'facebook/opt-125m', V1, { ref: 'v1.0' });
    const pr = await cacheModel(cache, 'facebook/opt-125m', 'c'.repeat(40), { ref: 'refs/pr/1' });
    expect(await resolvePretrained('facebook/opt-125m@v1.0')).toBe(v1);
    expect(await resolvePretrained(`facebook/opt-125m@${V1}`)).toBe(v1);
    expect(await resolvePretrained('facebook/opt-125m@refs/pr/1')).toBe(pr);
    await expect(resolvePretrained('facebook/opt-125m@v2.0')).rejects.toThrow(/facebook\/opt-125m@v2\.0/);
  });

  it('treats a snapshot without config.json (or without a requested file) as not cached', async () => {
    const cache = path.join(tmp, 'cache');
    await cacheModel(cache, 'gpt2', MAIN, { ref: 'main', files: ['model.safetensors'] });
    await expect(resolvePretrained('gpt2')).rejects.toThrow(/not in the Hugging Face cache/);
    const snap = await cacheModel(cache, 'gpt2', MAIN, { ref: 'main', files: ['config.json'] });
    expect(await resolvePretrained('gpt2', { files: ['config.json', 'model.safetensors'] })).toBe(snap);
    await expect(resolvePretrained('gpt2', { files: ['tokenizer.json'] })).rejects.toThrow(/not in the/);
  });

  it('prefers HF_HUB_CACHE over HF_HOME/hub, and uses HF_HOME/hub alone', async () => {
    const home = path.join(tmp, 'hf-home');
    const fromHubCache = await cacheModel(path.join(tmp, 'cache'), 'gpt2', MAIN, { ref: 'main' });
    const fromHome = await cacheModel(path.join(home, 'hub'), 'gpt2', V1, { ref: 'main' });
    process.env.HF_HOME = home;
    expect(await resolvePretrained('gpt2')).toBe(fromHubCache);
    delete process.env.HF_HUB_CACHE;
    expect(await resolvePretrained('gpt2')).toBe(fromHome);
  });

  it('names the id and the cache path when offline and uncached', async () => {
    const expectedDir = path.join(tmp, 'cache', 'models--facebook--opt-125m');
    const err = await resolvePretrained('facebook/opt-125m').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('facebook/opt-125m@main');
    expect((err as Error).message).toContain(expectedDir);
    expect((err as Error).message).toContain('HF_HUB_OFFLINE');
  });

  it('treats "true"/"yes" as offline too', async () => {
    for (const value of ['true', 'YES']) {
      process.env.HF_HUB_OFFLINE = value;
      await expect(resolvePretrained('gpt2', { hub: failingHub() })).rejects.toThrow(/HF_HUB_OFFLINE/);
    }
  });
});

describe('helpers', () => {
  it('hubCacheDir follows huggingface_hub precedence', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' })).toBe('/a');
    expect(hubCacheDir({ HF_HOME: '/b', XDG_CACHE_HOME: '/c' })).toBe(path.join('/b', 'hub'));
    expect(hubCacheDir({ XDG_CACHE_HOME: '/c' })).toBe(path.join('/c', 'huggingface', 'hub'));
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });

  it('parseModelRef splits the revision and rejects what is not an id', () => {
    expect(parseModelRef('gpt2')).toEqual({ repoId: 'gpt2', revision: 'main' });
    expect(parseModelRef('facebook/opt-125m@refs/pr/1')).toEqual({
      repoId: 'facebook/opt-125m',
      revision: 'refs/pr/1',
    });
    for (const bad of ['a b', 'org/name@', 'org/../x', '-x']) {
      expect(() => parseModelRef(bad), bad).toThrow(/neither an existing directory nor a Hub model id/);
    }
  });
});

/** A hub that serves `files` at `commit`, writing each download into the snapshot, and records the order. */
function fakeHub(commit: string, files: Record<string, string>) {
  const downloads: string[] = [];
  let resolves = 0;
  const hub: HubClient = {
    async resolveRevision() {
      resolves++;
      return { commit, files: Object.keys(files) };
    },
    async downloadFile(repoId, file, at, cacheDir) {
      downloads.push(file);
      const target = path.join(cacheDir, repoFolderName(repoId), 'snapshots', at, file);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, files[file]);
    },
  };
  return { hub, downloads, resolveCount: () => resolves };
}

function failingHub(): HubClient {
  const fail = async (): Promise<never> => {
    throw new Error('the network was used');
  };
  return { resolveRevision: fail, downloadFile: fail };
}

describe('resolvePretrained downloads (fake hub)', () => {
  beforeEach(() => {
    delete process.env.HF_HUB_OFFLINE;
  });

  it('fetches weights (index + shards) first and config.json last, writes refs/main, then hits the cache', async () => {
    const [shard1, shard2] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const index = { weight_map: { 'a.weight': shard1, 'b.weight': shard2, 'c.weight': shard1 } };
    const { hub, downloads, resolveCount } = fakeHub(MAIN, {
      'config.json': '{}',
      'model.safetensors.index.json': JSON.stringify(index),
      [shard1]: 'x',
      [shard2]: 'y',
      'tokenizer.json': '{}',
      'generation_config.json': '{}',
      'README.md': 'not fetched',
      'pytorch_model.bin': 'not fetched',
    });
    const dir = await resolvePretrained('org/model', { hub });
    expect(dir).toBe(path.join(tmp, 'cache', 'models--org--model', 'snapshots', MAIN));
    expect(downloads).toEqual([
      'model.safetensors.index.json',
      shard1,
      shard2,
      'generation_config.json',
      'tokenizer.json',
      'config.json',
    ]);
    expect(await readFile(path.join(tmp, 'cache', 'models--org--model', 'refs', 'main'), 'utf8')).toBe(MAIN);
    expect(await resolvePretrained('org/model', { hub })).toBe(dir);
    expect(resolveCount()).toBe(1);
  });

  it('fetches exactly the requested files, and names what the repository lacks', async () => {
    const { hub, downloads } = fakeHub(V1, { 'config.json': '{}', 'tokenizer.json': '{}', 'model.safetensors': 'x' });
    const dir = await resolvePretrained('gpt2@v1', { hub, files: ['config.json', 'tokenizer.json'] });
    expect(downloads).toEqual(['tokenizer.json', 'config.json']);
    expect(await readFile(path.join(tmp, 'cache', 'models--gpt2', 'refs', 'v1'), 'utf8')).toBe(V1);
    expect(dir.endsWith(V1)).toBe(true);
    await expect(resolvePretrained('gpt2@v1', { hub, files: ['merges.txt'] })).rejects.toThrow(
      /gpt2@v1 has no merges\.txt/,
    );
  });

  it('refuses a repository without safetensors weights', async () => {
    const { hub } = fakeHub(MAIN, { 'config.json': '{}', 'pytorch_model.bin': 'x' });
    await expect(resolvePretrained('old/model', { hub })).rejects.toThrow(
      /no model\.safetensors or model\.safetensors\.index\.json/,
    );
  });
});
