#!/usr/bin/env node
/**
 * label_pairs: preference pairs made the way InstructGPT's recipe describes: the SFT model writes several answers
 * to each prompt, a labeler ranks them, and the best and worst answer of a prompt become a chosen/rejected pair.
 * Here the labeler is automatic (`--judge`); the pairs are written as ShareGPT-style JSONL that train_reward_model
 * (and train_dpo) read, with the judge's scores beside them for inspection.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command, Option } from 'commander';
import { addModelOptions, float, int, loadModelAndTokenizer, runMain, setupRun, threadsOption } from './common.js';
import { invokedDirectly } from './run_main.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { Rng } from '../engine/rng.js';
import { getTemplate, TEMPLATE_NAMES } from '../data/templates/index.js';
import { DEFAULT_PROMPT_TEMPLATE, preparePrompts, recordedTemplate } from '../ppo/data.js';
import { answerPrompts, checkAnswerBudget } from '../rollout/answer_prompts.js';
import { JUDGES, judgeScores, type JudgeName } from '../rewards/sentiment.js';

interface LabelOptions {
  pretrain: string;
  model?: string;
  tokenizer?: string;
  prompts: string;
  prompt_column?: string;
  prompt_template?: string;
  skip_prompts: number;
  num_prompts: number;
  num_samples: number;
  judge: JudgeName;
  min_gap: number;
  pairs: Pairing;
  max_input_len: number;
  max_new_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  batch_size: number;
  out: string;
  stats?: string;
  backend: string;
  seed: number;
}

export interface LabeledPair {
  conversations: { from: 'human'; value: string }[];
  chosen: { from: 'gpt'; value: string };
  rejected: { from: 'gpt'; value: string };
  chosen_score: number;
  rejected_score: number;
}

/** What `--stats` writes. */
export interface LabelStats {
  prompts: number;
  num_samples: number;
  pairs: number;
  /** Prompts that gave no pair: all their answers within --min_gap of each other. */
  ties: number;
  /** Candidate pairs (of --pairs) skipped because their scores differ by less than --min_gap. */
  near_ties: number;
  min_gap: number;
  pairing: Pairing;
  judge: JudgeName;
  judge_mean: number;
  gap_mean: number;
  prompts_cut: number;
  wall_s: number;
}

export const PAIRINGS = ['all', 'best_worst'] as const;
export type Pairing = (typeof PAIRINGS)[number];

/**
 * Pairs from each prompt's ranked answers: `all` takes every two answers whose judge scores differ by at least
 * `minGap` (InstructGPT's K-choose-2 comparisons of one ranking), `best_worst` only the top against the bottom one.
 * Identical answers never pair. `nearTies` counts the candidate pairs skipped for a gap under `minGap`.
 */
export function pairsFromGroups(prompts: readonly string[], groups: readonly string[][], scores: readonly number[][], minGap: number, pairing: Pairing = 'all'): { pairs: LabeledPair[]; ties: number; nearTies: number } {
  const pairs: LabeledPair[] = [];
  let ties = 0;
  let nearTies = 0;
  groups.forEach((answers, i) => {
    const s = scores[i]!;
    const order = s.map((_, j) => j).sort((a, b) => s[b]! - s[a]! || a - b); // best first
    const candidates: [number, number][] = pairing === 'best_worst'
      ? [[order[0]!, order.at(-1)!]]
      : order.flatMap((hi, x) => order.slice(x + 1).map((lo) => [hi, lo] as [number, number]));
    const kept = candidates.filter(([hi, lo]) => s[hi]! - s[lo]! >= minGap && answers[hi] !== answers[lo]);
    nearTies += candidates.filter(([hi, lo]) => s[hi]! - s[lo]! < minGap).length;
    if (!kept.length) ties++;
    for (const [hi, lo] of kept) {
      pairs.push({
        conversations: [{ from: 'human', value: prompts[i]! }],
        chosen: { from: 'gpt', value: answers[hi]! },
        rejected: { from: 'gpt', value: answers[lo]! },
        chosen_score: s[hi]!,
        rejected_score: s[lo]!,
      });
    }
  });
  return { pairs, ties, nearTies };
}

async function main(): Promise<void> {
  const cmd = new Command('label_pairs')
    .description('Sample several answers per prompt from a model, rank them with an automatic judge, write chosen/rejected pairs (JSONL).');
  addModelOptions(cmd);
  cmd
    .requiredOption('--prompts <file>', 'prompt dataset (JSON/JSONL/CSV: prompt, instruction(+input), text, query or question)')
    .option('--prompt_column <name>', 'the field holding the prompt (detected when omitted)')
    .option('--prompt_template <name>', `template the prompts are rendered with: ${TEMPLATE_NAMES.join(', ')} (default: the one the model was trained with)`)
    .option('--skip_prompts <n>', 'start at this prompt (to keep other prompts held out)', int('--skip_prompts', 0), 0)
    .option('--num_prompts <n>', 'prompts to label', int('--num_prompts', 1), 256)
    .option('--num_samples <k>', 'answers sampled per prompt', int('--num_samples', 2), 4)
    .addOption(new Option('--judge <name>', 'the automatic labeler').choices([...JUDGES]).default('sentiment'))
    .addOption(new Option('--pairs <how>', 'all: every two answers of a prompt whose scores differ enough; best_worst: one pair per prompt').choices([...PAIRINGS]).default('all'))
    .option('--min_gap <g>', "a pair needs the judge's best and worst score of a prompt to differ by at least this", float('--min_gap', 0), 1)
    .option('--max_input_len <n>', "prompt tokens at most (longer prompts are shortened inside the user's text)", int('--max_input_len', 1), 96)
    .option('--max_new_tokens <n>', 'answer tokens at most', int('--max_new_tokens', 1), 32)
    .option('--temperature <t>', 'sampling temperature', float('--temperature', 0), 1)
    .option('--top_k <k>', 'sample among the k most likely tokens (0: all)', int('--top_k', 0), 50)
    .option('--top_p <p>', 'nucleus sampling mass', float('--top_p', 0, 1), 1)
    .option('--batch_size <n>', 'rows per generation batch', int('--batch_size', 1), 32)
    .requiredOption('--out <file>', 'where the pairs go (JSONL)')
    .option('--stats <file>', 'also write the counts (prompts, pairs, ties, shortened prompts, judge means) as JSON')
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption())
    .option('--seed <n>', 'sampling seed', int('--seed'), 42);
  cmd.parse();
  const o = cmd.opts<LabelOptions>();
  await setupRun({ backend: o.backend, seed: o.seed });
  const t0 = Date.now();
  const { model, tokenizer, pretrainDir } = await loadModelAndTokenizer(o);
  checkAnswerBudget(model, pretrainDir, o.max_input_len, o.max_new_tokens);
  const template = getTemplate(o.prompt_template ?? recordedTemplate(pretrainDir) ?? DEFAULT_PROMPT_TEMPLATE);
  const data = await preparePrompts(o.prompts, tokenizer, { template, maxInputLen: o.max_input_len, column: o.prompt_column, maxRecords: o.skip_prompts + o.num_prompts });
  const ids = data.prompts.slice(o.skip_prompts);
  const users = data.samples.slice(o.skip_prompts).map((s) => s.messages.at(-1)!.content);
  if (!ids.length) throw new Error(`--prompts ${o.prompts}: no prompts left after --skip_prompts ${o.skip_prompts}`);
  console.error(`label_pairs: ${ids.length} prompts × ${o.num_samples} answers from ${pretrainDir} (template ${template.name}), judge ${o.judge}`);
  // Every prompt k times in a row, so a batch holds whole groups.
  const repeated = ids.flatMap((p) => Array.from({ length: o.num_samples }, () => p));
  const answers = answerPrompts(model, tokenizer, repeated, {
    maxNewTokens: o.max_new_tokens, batchSize: o.batch_size, doSample: true, temperature: o.temperature, topK: o.top_k,
    topP: o.top_p, stop: template.stop, rng: new Rng(o.seed),
  }).map((a) => a.text);
  model.dispose();
  const scores = judgeScores(o.judge, answers);
  const group = <T>(xs: T[]): T[][] => ids.map((_, i) => xs.slice(i * o.num_samples, (i + 1) * o.num_samples));
  const { pairs, ties, nearTies } = pairsFromGroups(users, group(answers), group(scores), o.min_gap, o.pairs);
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, pairs.map((p) => JSON.stringify(p)).join('\n') + (pairs.length ? '\n' : ''));
  const gap = pairs.reduce((s, p) => s + p.chosen_score - p.rejected_score, 0) / Math.max(1, pairs.length);
  const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
  console.error(
    `label_pairs: ${pairs.length} pairs → ${o.out} (${ties} of ${ids.length} prompts gave none with a gap ≥ ${o.min_gap}; mean judge score ${mean.toFixed(3)}, ` +
      `mean chosen − rejected ${gap.toFixed(2)}; ${data.cut.slice(o.skip_prompts).filter(Boolean).length} prompts shortened to --max_input_len; ${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );
  if (o.stats) {
    mkdirSync(dirname(o.stats), { recursive: true });
    const stats: LabelStats = {
      prompts: ids.length, num_samples: o.num_samples, pairs: pairs.length, ties, near_ties: nearTies, min_gap: o.min_gap, pairing: o.pairs, judge: o.judge,
      judge_mean: mean, gap_mean: gap, prompts_cut: data.cut.slice(o.skip_prompts).filter(Boolean).length, wall_s: (Date.now() - t0) / 1000,
    };
    writeFileSync(o.stats, JSON.stringify(stats) + '\n');
  }
  if (!pairs.length) throw new Error('no pairs: every prompt\'s answers scored alike; sample more (--num_samples) or lower --min_gap');
}

if (invokedDirectly(import.meta.url)) runMain(main);
