/**
 * Resolves `--pretrain` style arguments to a local model directory: a directory as given, or a Hugging Face Hub
 * model id (`gpt2`, `facebook/opt-125m`, `facebook/opt-125m@<branch|tag|commit>`) looked up in, or downloaded into,
 * the cache that Python's `huggingface_hub` uses, so both ecosystems share downloads:
 *
 *   <cache>/models--facebook--opt-125m/refs/main             the commit hash that "main" points to
 *   <cache>/models--facebook--opt-125m/snapshots/<hash>/...  the files at that commit
 *
 * <cache> is HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 * HF_HUB_OFFLINE=1 (or true/yes; also TRANSFORMERS_OFFLINE) forbids network access: an uncached id is an error.
 * Downloads fetch config.json LAST, so a snapshot that has config.json is complete (an interrupted download is
 * retried rather than returned half-made). A request that gets no byte for RLHF_HUB_TIMEOUT_S seconds (default 30)
 * is given up, and a failed download names the model id, the cache path tried and HF_HUB_OFFLINE=1.
 */
import { downloadFileToCacheDir, modelInfo } from '@huggingface/hub';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { InputFileError } from './input_error.js';
import { readSafetensorsIndex } from './safetensors_index.js';
import os from 'node:os';
import path from 'node:path';

/** What a download needs from the Hub; tests replace it with a fake, the default talks to huggingface.co. */
export interface HubClient {
  /** The commit a revision (branch, tag or hash) points to, and the repository's file paths at that commit. */
  resolveRevision(repoId: string, revision: string): Promise<{ commit: string; files: string[] }>;
  /** Puts one file at `<cacheDir>/models--.../snapshots/<commit>/<file>` (blobs + symlink, as huggingface_hub). */
  downloadFile(repoId: string, file: string, commit: string, cacheDir: string): Promise<void>;
}

export interface ResolveOptions {
  /** Files to fetch and to require in a cached snapshot. Default: config, generation config, tokenizer, weights. */
  files?: string[];
  /** Where downloads come from; default `huggingFaceHub()` (HF_ENDPOINT and HF_TOKEN honoured). */
  hub?: HubClient;
}

export interface ModelRef {
  repoId: string;
  revision: string;
}

/** Small files taken when the repository has them; weights are added separately. */
const OPTIONAL_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
];
const WEIGHTS = 'model.safetensors';
const WEIGHTS_INDEX = 'model.safetensors.index.json';
const COMPLETE_MARKER = 'config.json';
const COMMIT_HASH = /^[0-9a-f]{40}$/;
const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

/** Returns a local directory holding the model named by `nameOrPath` (see the file comment). */
export async function resolvePretrained(nameOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const local = expandHome(nameOrPath);
  const kind = await pathKind(local);
  if (kind === 'dir') return local;
  if (kind === 'file') throw new Error(`${nameOrPath} is a file; expected a model directory or a Hub model id`);
  if (looksLikePath(nameOrPath)) throw new Error(`No such model directory: ${nameOrPath}`);

  const ref = parseModelRef(nameOrPath);
  const cacheDir = hubCacheDir();
  const required = opts.files ?? [COMPLETE_MARKER];
  const cached = await findCachedSnapshot(cacheDir, ref, required);
  if (cached !== null) return cached;

  const repoDir = path.join(cacheDir, repoFolderName(ref.repoId));
  if (isOffline()) {
    throw new Error(
      `${ref.repoId}@${ref.revision} is not in the Hugging Face cache (looked in ${repoDir}) and HF_HUB_OFFLINE ` +
        `forbids downloading it. Download it once online, point HF_HUB_CACHE/HF_HOME at a cache that has it, ` +
        `or pass a local directory.`,
    );
  }
  const hub = opts.hub ?? huggingFaceHub();
  try {
    return await downloadSnapshot(ref, cacheDir, opts.files, hub);
  } catch (e) {
    if (e instanceof InputFileError) throw e; // a bad file from the Hub already names itself
    throw downloadError(e, ref, repoDir);
  }
}

/** Default for RLHF_HUB_TIMEOUT_S: seconds without a byte from the Hub before a request is given up. */
export const DEFAULT_HUB_TIMEOUT_S = 30;
export const HUB_TIMEOUT_ENV = 'RLHF_HUB_TIMEOUT_S';

/** The stall timeout in milliseconds, from RLHF_HUB_TIMEOUT_S. */
export function hubTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[HUB_TIMEOUT_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_HUB_TIMEOUT_S * 1000;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) throw new Error(`${HUB_TIMEOUT_ENV}=${raw}: expected a positive number of seconds`);
  return s * 1000;
}

/** A request the Hub stopped answering (no byte for the stall timeout). */
export class HubTimeoutError extends Error {
  constructor(readonly url: string, readonly seconds: number) {
    super(`no answer from ${url} for ${seconds} s (${HUB_TIMEOUT_ENV})`);
    this.name = 'HubTimeoutError';
  }
}

/**
 * `fetch` that gives up when the server sends nothing for `timeoutMs`: before the response headers (a connection
 * accepted and never answered) and between chunks of the body (a download that stalls). A slow but moving download
 * of a large file is never cut.
 */
export function stallTimeoutFetch(timeoutMs: number, inner: typeof fetch = fetch): typeof fetch {
  return async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const controller = new AbortController();
    const outer = init.signal;
    if (outer) {
      if (outer.aborted) controller.abort(outer.reason);
      else outer.addEventListener('abort', () => controller.abort(outer.reason), { once: true });
    }
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new HubTimeoutError(url, timeoutMs / 1000)), timeoutMs);
    };
    arm();
    let res: Response;
    try {
      res = await inner(input, { ...init, signal: controller.signal });
    } catch (e) {
      clearTimeout(timer);
      throw controller.signal.reason instanceof HubTimeoutError ? controller.signal.reason : e;
    }
    if (!res.body) {
      clearTimeout(timer);
      return res;
    }
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, out) {
          arm();
          out.enqueue(chunk);
        },
        flush() {
          clearTimeout(timer);
        },
      }),
    );
    const wrapped = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    // The library reads the final URL (after redirects); a new Response has none of its own.
    Object.defineProperty(wrapped, 'url', { value: res.url });
    Object.defineProperty(wrapped, 'redirected', { value: res.redirected });
    return wrapped;
  };
}

/** A failed download, said with the model id, the cache path tried, and what to do without a network. */
function downloadError(e: unknown, ref: ModelRef, repoDir: string): Error {
  const where = `${ref.repoId}@${ref.revision}`;
  const endpoint = process.env.HF_ENDPOINT || 'https://huggingface.co';
  const offline = `It is not in the cache (looked in ${repoDir}). Check the network, or set HF_HUB_OFFLINE=1 to use only the cache, or pass a local model directory.`;
  const timeout = findInChain(e, (x) => x instanceof HubTimeoutError) as HubTimeoutError | undefined;
  if (timeout) return new Error(`cannot download ${where}: ${timeout.message}. ${offline}`, { cause: e });
  const net = findInChain(e, (x) => typeof (x as NodeJS.ErrnoException).code === 'string' && /^(E[A-Z]+|UND_ERR_\w+)$/.test((x as NodeJS.ErrnoException).code!)) as NodeJS.ErrnoException | undefined;
  if (net || (e instanceof TypeError && /fetch failed/.test(e.message))) {
    const detail = net ? `${net.code}${net.message && !net.message.includes(net.code!) ? `: ${net.message}` : ''}` : (e as Error).message;
    return new Error(`cannot reach ${endpoint} to download ${where} (${detail}). ${offline}`, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new Error(`cannot download ${where} into ${repoDir}: ${msg}`, { cause: e });
}

function findInChain(e: unknown, test: (x: unknown) => boolean): unknown {
  for (let x: unknown = e, depth = 0; x && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    if (test(x)) return x;
  }
  return undefined;
}

/** Splits `org/name@revision` (revision default "main"; it may contain "/", as in `refs/pr/1`). */
export function parseModelRef(spec: string): ModelRef {
  const at = spec.indexOf('@');
  const repoId = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? 'main' : spec.slice(at + 1);
  if (!REPO_ID.test(repoId) || repoId.includes('..') || revision === '' || revision.includes('..')) {
    throw new Error(
      `"${spec}" is neither an existing directory nor a Hub model id like "gpt2" or "facebook/opt-125m@main"`,
    );
  }
  return { repoId, revision };
}

/** The hub cache directory, with huggingface_hub's precedence of environment variables. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const hubCache = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE; // the second is the older name
  if (hubCache) return expandHome(hubCache);
  if (env.HF_HOME) return path.join(expandHome(env.HF_HOME), 'hub');
  const xdg = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(xdg, 'huggingface', 'hub');
}

/** `facebook/opt-125m` -> `models--facebook--opt-125m`. */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/** The cached snapshot directory of `ref` when it holds every file of `required`, else null. */
export async function findCachedSnapshot(cacheDir: string, ref: ModelRef, required: string[]): Promise<string | null> {
  const repoDir = path.join(cacheDir, repoFolderName(ref.repoId));
  const commit = COMMIT_HASH.test(ref.revision) ? ref.revision : await readRef(repoDir, ref.revision);
  if (commit === null) return null;
  const snapshot = path.join(repoDir, 'snapshots', commit);
  for (const file of required) {
    if ((await pathKind(path.join(snapshot, file))) !== 'file') return null;
  }
  return snapshot;
}

/** A HubClient over `@huggingface/hub`. */
export function huggingFaceHub(env: NodeJS.ProcessEnv = process.env): HubClient {
  const hubUrl = env.HF_ENDPOINT || undefined;
  const accessToken = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined;
  const timedFetch = stallTimeoutFetch(hubTimeoutMs(env));
  return {
    async resolveRevision(repoId, revision) {
      const info = await modelInfo({
        name: repoId,
        revision,
        additionalFields: ['sha', 'filePaths'],
        hubUrl,
        accessToken,
        fetch: timedFetch,
      });
      if (typeof info.sha !== 'string') throw new Error(`The Hub returned no commit for ${repoId}@${revision}`);
      return { commit: info.sha, files: info.filePaths ?? [] };
    },
    async downloadFile(repoId, file, commit, cacheDir) {
      // Passing the commit (not the branch) makes the file land in snapshots/<commit>, next to its siblings.
      await downloadFileToCacheDir({
        repo: { type: 'model', name: repoId },
        path: file,
        revision: commit,
        cacheDir,
        hubUrl,
        accessToken,
        fetch: timedFetch,
      });
    },
  };
}

async function downloadSnapshot(
  ref: ModelRef,
  cacheDir: string,
  requested: string[] | undefined,
  hub: HubClient,
): Promise<string> {
  const { commit, files } = await hub.resolveRevision(ref.repoId, ref.revision);
  const available = new Set(files);
  const where = `${ref.repoId}@${ref.revision}`;
  const snapshot = path.join(cacheDir, repoFolderName(ref.repoId), 'snapshots', commit);

  let plan: string[];
  if (requested !== undefined) {
    const missing = requested.filter((f) => !available.has(f));
    if (missing.length > 0) throw new Error(`${where} has no ${missing.join(', ')}`);
    plan = requested;
  } else {
    if (!available.has(COMPLETE_MARKER)) throw new Error(`${where} has no config.json: not a transformers model`);
    plan = [...(await weightFiles(ref, available, snapshot, cacheDir, commit, hub))];
    plan.push(...OPTIONAL_FILES.filter((f) => available.has(f)), COMPLETE_MARKER);
  }
  // config.json last: its presence marks the snapshot complete (see the file comment).
  plan = [...plan.filter((f) => f !== COMPLETE_MARKER), ...plan.filter((f) => f === COMPLETE_MARKER)];
  for (const file of plan) {
    await hub.downloadFile(ref.repoId, file, commit, cacheDir);
  }
  if (ref.revision !== commit) {
    const refFile = path.join(cacheDir, repoFolderName(ref.repoId), 'refs', ref.revision);
    await mkdir(path.dirname(refFile), { recursive: true });
    await writeFile(refFile, commit);
  }
  return snapshot;
}

/** model.safetensors, or the index plus every shard its weight_map names (the index is fetched to read them). */
async function weightFiles(
  ref: ModelRef,
  available: Set<string>,
  snapshot: string,
  cacheDir: string,
  commit: string,
  hub: HubClient,
): Promise<string[]> {
  if (available.has(WEIGHTS)) return [WEIGHTS];
  if (!available.has(WEIGHTS_INDEX)) {
    throw new Error(
      `${ref.repoId}@${ref.revision} has no ${WEIGHTS} or ${WEIGHTS_INDEX}; only safetensors checkpoints load here`,
    );
  }
  await hub.downloadFile(ref.repoId, WEIGHTS_INDEX, commit, cacheDir);
  const indexFile = path.join(snapshot, WEIGHTS_INDEX);
  // The same checks as loading: well-formed, and every shard a file inside the snapshot.
  const shards = [...readSafetensorsIndex(indexFile).keys()];
  for (const shard of shards) {
    if (!available.has(shard)) {
      throw new InputFileError(indexFile, `weight_map names shard ${JSON.stringify(shard)}, which ${ref.repoId} lacks`);
    }
  }
  return shards; // the index itself is already in the snapshot
}

async function readRef(repoDir: string, revision: string): Promise<string | null> {
  try {
    const commit = (await readFile(path.join(repoDir, 'refs', revision), 'utf8')).trim();
    return COMMIT_HASH.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

function isOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  const truthy = (v: string | undefined) => ['1', 'true', 'yes', 'on'].includes((v ?? '').trim().toLowerCase());
  return truthy(env.HF_HUB_OFFLINE) || truthy(env.TRANSFORMERS_OFFLINE);
}

/** Paths the user clearly meant as paths (so a typo is "no such directory", not a Hub lookup). */
function looksLikePath(spec: string): boolean {
  return (
    spec.startsWith('.') ||
    spec.startsWith('/') ||
    spec.startsWith('~') ||
    spec.includes('\\') ||
    spec.split('@')[0].split('/').length > 2
  );
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

async function pathKind(p: string): Promise<'dir' | 'file' | null> {
  try {
    const s = await stat(p);
    return s.isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}
