/**
 * Whether a model directory holds a scoring model (reward model or critic) rather than a language model, judged from
 * its files alone (no weights are read): an `rlhf.kind` mark in config.json / rlhf_config.json, HF's
 * `architectures: [...ForSequenceClassification]`, or `value_head.*` / `score.weight` tensors (this project's layout
 * and HF's), in model.safetensors, its shard index, or value_head.safetensors. Used to refuse such a directory where
 * a language model is expected (the SFT base, the PPO actor, `inference`): its LM head is untrained or missing.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader } from './safetensors.js';

const SCORE_KINDS = new Set(['reward_model', 'critic']);
const SCORE_TENSOR = /^(value_head\.(weight|bias)|score\.weight)$/;

function readJson(file: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null; // unreadable files are reported by the loader, which names the problem
  }
}

/** Tensor names of the directory's weights (header or index only), or [] when there are none to read. */
function tensorNames(dir: string): string[] {
  const index = readJson(join(dir, 'model.safetensors.index.json'));
  if (index && typeof index.weight_map === 'object' && index.weight_map !== null) return Object.keys(index.weight_map);
  const names: string[] = [];
  for (const f of ['model.safetensors', 'value_head.safetensors']) {
    if (!existsSync(join(dir, f))) continue;
    try {
      names.push(...Object.keys(readSafetensorsHeader(join(dir, f)).header));
    } catch {
      // a broken file is the loader's to report
    }
  }
  return names;
}

/** Why `dir` is a reward model or critic (one phrase), or null when it looks like a language model or is no dir. */
export function scoringModelReason(dir: string): string | null {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return null;
  for (const file of ['config.json', 'rlhf_config.json']) {
    const cfg = readJson(join(dir, file));
    const kind = (cfg?.rlhf as { kind?: unknown } | undefined)?.kind;
    if (typeof kind === 'string' && SCORE_KINDS.has(kind)) return `its ${file} marks it as a ${kind.replace('_', ' ')} (rlhf.kind)`;
    const arch = Array.isArray(cfg?.architectures) ? (cfg!.architectures as unknown[]).find((a) => typeof a === 'string' && a.endsWith('ForSequenceClassification')) : undefined;
    if (arch) return `its ${file} names the architecture ${String(arch)}`;
  }
  const head = tensorNames(dir).find((n) => SCORE_TENSOR.test(n));
  return head ? `it holds a scalar head (${head})` : null;
}

/**
 * Throws when `dir`, given with `flag` where a language model is expected, is a reward model or critic; `use` says
 * what the flag wants instead.
 */
export function refuseScoringModel(dir: string, flag: string, use: string): void {
  const why = scoringModelReason(dir);
  if (why) throw new Error(`${flag} ${dir} is a reward model or critic, not a language model: ${why}. ${use}`);
}
