/**
 * Reward functions from a user's module: `--reward_funcs ./my_rewards.mjs` (or .js, .ts). Every exported function
 * is a reward `(prompts, completions, extra) => number[] | Promise<number[]>`, named by its export (`default` by
 * the function's own name when it has one). A `.ts` module goes through tsx, the loader the CLIs run under.
 */
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RewardBatch, RewardSource, UserRewardFunction } from './types.js';

export function looksLikeModulePath(spec: string): boolean {
  return /\.(mjs|cjs|js|ts|mts|cts)$/.test(spec) || spec.startsWith('.') || spec.startsWith('/');
}

async function importModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  if (/\.(ts|mts|cts)$/.test(file)) {
    let api: { tsImport: (specifier: string, parent: string) => Promise<Record<string, unknown>> };
    try {
      api = (await import('tsx/esm/api')) as typeof api;
    } catch {
      throw new Error(`--reward_funcs ${file}: loading a .ts module needs the tsx package (npm install tsx), or compile it to .mjs`);
    }
    return api.tsImport(url, import.meta.url);
  }
  return (await import(url)) as Record<string, unknown>;
}

/** Describes a sample for error messages: its index and the start of its prompt. */
function sampleLabel(b: RewardBatch, i: number): string {
  const p = b.prompts[i] ?? '';
  return `sample ${i} (prompt ${JSON.stringify(p.length > 60 ? `${p.slice(0, 60)}…` : p)})`;
}

/** Calls a user function and checks what it returns: an array of the batch's length of finite numbers or null. */
export async function callUserReward(name: string, fn: UserRewardFunction, b: RewardBatch): Promise<(number | null)[]> {
  let out: unknown;
  try {
    out = await fn(b.prompts, b.completions, b.extra);
  } catch (e) {
    // Find the sample it fails on, calling it one sample at a time.
    for (let i = 0; i < b.completions.length; i++) {
      const one = Object.fromEntries(Object.entries(b.extra).map(([k, v]) => [k, [v[i]]]));
      try {
        await fn([b.prompts[i]!], [b.completions[i]!], one);
      } catch (inner) {
        throw new Error(`reward function "${name}" threw on ${sampleLabel(b, i)}: ${(inner as Error)?.message ?? String(inner)}`);
      }
    }
    throw new Error(`reward function "${name}" threw on a batch of ${b.completions.length} samples: ${(e as Error)?.message ?? String(e)}`);
  }
  if (!Array.isArray(out)) throw new Error(`reward function "${name}" must return an array of numbers (one per completion), got ${out === null ? 'null' : typeof out}`);
  if (out.length !== b.completions.length) throw new Error(`reward function "${name}" returned ${out.length} values for ${b.completions.length} completions`);
  return out.map((v, i) => {
    if (v === null || v === undefined) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`reward function "${name}" returned ${JSON.stringify(v) ?? String(v)} for ${sampleLabel(b, i)}: expected a finite number or null`);
    return v;
  });
}

/** Every exported function of the module as a reward source. */
export async function loadUserRewards(path: string): Promise<RewardSource[]> {
  const file = resolve(path);
  if (!existsSync(file)) throw new Error(`--reward_funcs ${path}: no such file`);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(file);
  } catch (e) {
    throw new Error(`--reward_funcs ${path}: could not load the module: ${(e as Error).message}`);
  }
  const sources: RewardSource[] = [];
  for (const [key, value] of Object.entries(mod)) {
    if (typeof value !== 'function') continue;
    const name = key === 'default' ? (value.name && value.name !== 'default' ? value.name : basename(file).replace(/\.[^.]+$/, '')) : key;
    const fn = value as UserRewardFunction;
    sources.push({ name, score: (b) => callUserReward(name, fn, b) });
  }
  if (!sources.length) throw new Error(`--reward_funcs ${path}: the module exports no function (each exported function is a reward: (prompts, completions, extra) => number[])`);
  return sources;
}
