import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { readSafetensors } from '../../src/hub/safetensors.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
/** Fixture folders: the four older families, then the newer ones (llama3 is a LLaMA with llama3 rope scaling). */
export const ARCHS = ['gpt2', 'opt', 'bloom', 'llama', 'qwen2', 'qwen3', 'mistral', 'gpt_neox', 'llama3', 'phi3', 'gemma2'] as const;
export type Arch = (typeof ARCHS)[number];

export function fixtureDir(arch: Arch): string {
  return join(FIXTURES, 'hf', arch);
}

export interface Expected {
  loss: number;
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
  greedy: { prompt_ids: number[]; output_ids: number[] };
  encode: { text: string; ids: number[]; ids_no_special: number[]; decoded: string }[];
  vocab_size: number;
}

export function expectedJson(arch: Arch): Expected {
  return JSON.parse(readFileSync(join(fixtureDir(arch), 'expected.json'), 'utf8')) as Expected;
}

export function expectedTensors(arch: Arch, sub = '') {
  return readSafetensors(join(fixtureDir(arch), sub, 'expected.safetensors')).tensors;
}

/** ‖a − b‖ / ‖b‖ */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den || 1);
}

export const sharedDir = join(FIXTURES, '..', '..', '..', 'shared');
export const hasShared = existsSync(sharedDir);
