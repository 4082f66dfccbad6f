#!/usr/bin/env node
/**
 * judge: what models answer to the same held-out prompts, scored by an automatic judge (and optionally by a reward
 * model): greedy and sampled answers, each model's mean score, and the paired effect of the later models against
 * the first (mean difference with its 95% interval, Cohen's d_z, wins/ties/losses). `--out` keeps every answer for
 * the report's side-by-side table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Command, Option } from 'commander';
import { float, int, loadModelAndTokenizer, runMain, setupRun, threadsOption } from './common.js';
import { invokedDirectly } from './run_main.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { Rng } from '../engine/rng.js';
import { getTemplate, TEMPLATE_NAMES } from '../data/templates/index.js';
import { DEFAULT_PROMPT_TEMPLATE, preparePrompts, recordedTemplate } from '../ppo/data.js';
import { loadRewardModel } from '../reward/load.js';
import { answerMaskRows } from '../models/value_model.js';
import { answerPrompts, checkAnswerBudget, type Answer } from '../rollout/answer_prompts.js';
import { JUDGES, judgeScores, type JudgeName } from '../rewards/sentiment.js';
import { pairedEffect, sampleStd, type PairedEffect } from '../report/effect_size.js';

export const DECODINGS = ['greedy', 'sampled'] as const;
type Decoding = (typeof DECODINGS)[number];

interface JudgeOptions {
  pretrain: string[];
  names?: string;
  tokenizer?: string;
  prompts: string;
  prompt_column?: string;
  prompt_template?: string;
  skip_prompts: number;
  num_prompts: number;
  judge: JudgeName;
  rm_path?: string;
  decoding: string;
  max_input_len: number;
  max_new_tokens: number;
  temperature: number;
  top_k: number;
  batch_size: number;
  out?: string;
  backend: string;
  seed: number;
}

export interface ModelAnswers {
  name: string;
  dir: string;
  answers: string[];
  judge: number[];
  judgeMean: number;
  judgeStd: number;
  rm?: number[];
  rmMean?: number;
}

export interface JudgeReport {
  judge: JudgeName;
  prompts: string[];
  template: string;
  rmPath?: string;
  results: Partial<Record<Decoding, ModelAnswers[]>>;
  /** Each later model against the first, per decoding: judge (and rm) paired effects. */
  effects: Partial<Record<Decoding, { name: string; judge: PairedEffect; rm?: PairedEffect }[]>>;
}

const fmt = (v: number, d = 3) => (v >= 0 ? ' ' : '') + v.toFixed(d);

async function main(): Promise<void> {
  const cmd = new Command('judge')
    .description('Answer held-out prompts with one or more models and score the answers with an automatic judge (and a reward model).')
    .requiredOption('--pretrain <dirs...>', 'model directories to compare; the first is the baseline')
    .option('--names <list>', 'comma-separated names for them (default: directory names)')
    .option('--tokenizer <dir>', 'tokenizer directory (default: each model directory)')
    .requiredOption('--prompts <file>', 'prompt dataset (JSON/JSONL/CSV)')
    .option('--prompt_column <name>', 'the field holding the prompt (detected when omitted)')
    .option('--prompt_template <name>', `template: ${TEMPLATE_NAMES.join(', ')} (default: the one the first model was trained with)`)
    .option('--skip_prompts <n>', 'start at this prompt (keep the prompts training used out)', int('--skip_prompts', 0), 0)
    .option('--num_prompts <n>', 'prompts to answer', int('--num_prompts', 1), 64)
    .addOption(new Option('--judge <name>', 'the automatic judge').choices([...JUDGES]).default('sentiment'))
    .option('--rm_path <dir>', 'also score the answers with this reward model')
    .option('--decoding <list>', `comma-separated: ${DECODINGS.join(', ')}`, 'greedy,sampled')
    .option('--max_input_len <n>', "prompt tokens at most (longer prompts are shortened inside the user's text)", int('--max_input_len', 1), 96)
    .option('--max_new_tokens <n>', 'answer tokens at most', int('--max_new_tokens', 1), 32)
    .option('--temperature <t>', 'sampling temperature (sampled decoding)', float('--temperature', 0), 1)
    .option('--top_k <k>', 'sample among the k most likely tokens (0: all)', int('--top_k', 0), 50)
    .option('--batch_size <n>', 'rows per generation batch', int('--batch_size', 1), 32)
    .option('--out <file>', 'write every answer and score as JSON')
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption())
    .option('--seed <n>', 'sampling seed (the same for every model)', int('--seed'), 42);
  cmd.parse();
  const o = cmd.opts<JudgeOptions>();
  const decodings = o.decoding.split(',').map((s) => s.trim()).filter(Boolean);
  for (const d of decodings) if (!(DECODINGS as readonly string[]).includes(d)) throw new Error(`--decoding: unknown "${d}" (choose from ${DECODINGS.join(', ')})`);
  const names = o.names ? o.names.split(',').map((s) => s.trim()) : o.pretrain.map((d) => basename(d));
  if (names.length !== o.pretrain.length) throw new Error(`--names gives ${names.length} names for ${o.pretrain.length} --pretrain directories`);
  await setupRun({ backend: o.backend, seed: o.seed });

  const rm = o.rm_path ? loadRewardModel(o.rm_path) : null;
  const report: JudgeReport = { judge: o.judge, prompts: [], template: '', rmPath: o.rm_path, results: {}, effects: {} };
  for (const [m, dir] of o.pretrain.entries()) {
    const { model, tokenizer, pretrainDir } = await loadModelAndTokenizer({ pretrain: dir, tokenizer: o.tokenizer });
    try {
      checkAnswerBudget(model, pretrainDir, o.max_input_len, o.max_new_tokens);
      const template = getTemplate(o.prompt_template ?? recordedTemplate(pretrainDir) ?? DEFAULT_PROMPT_TEMPLATE);
      const data = await preparePrompts(o.prompts, tokenizer, { template, maxInputLen: o.max_input_len, column: o.prompt_column, maxRecords: o.skip_prompts + o.num_prompts });
      const ids = data.prompts.slice(o.skip_prompts);
      if (!ids.length) throw new Error(`--prompts ${o.prompts}: no prompts left after --skip_prompts ${o.skip_prompts}`);
      if (m === 0) {
        report.prompts = data.samples.slice(o.skip_prompts).map((s) => s.messages.at(-1)!.content);
        report.template = template.name;
      }
      for (const d of decodings as Decoding[]) {
        const answers: Answer[] = answerPrompts(model, tokenizer, ids, {
          maxNewTokens: o.max_new_tokens, batchSize: o.batch_size, doSample: d === 'sampled', temperature: o.temperature,
          topK: o.top_k, stop: template.stop, rng: new Rng(o.seed),
        });
        const texts = answers.map((a) => a.text);
        const judge = judgeScores(o.judge, texts);
        const entry: ModelAnswers = { name: names[m]!, dir, answers: texts, judge, judgeMean: judge.reduce((a, b) => a + b, 0) / judge.length, judgeStd: sampleStd(judge) };
        if (rm) {
          entry.rm = [];
          for (let s = 0; s < ids.length; s += o.batch_size) {
            const prompts = ids.slice(s, s + o.batch_size);
            const rows = prompts.map((p, i) => [...p, ...answers[s + i]!.ids]);
            const T = Math.max(...rows.map((r) => r.length));
            const pad = tokenizer.padTokenId ?? 0;
            entry.rm.push(...rm.scoreArrays(
              rows.map((r) => [...r, ...new Array<number>(T - r.length).fill(pad)]),
              rows.map((r) => [...r.map(() => 1), ...new Array<number>(T - r.length).fill(0)]),
              answerMaskRows(prompts.map((p) => p.length), rows.map((r) => r.length), T),
            ));
          }
          entry.rmMean = entry.rm.reduce((a, b) => a + b, 0) / entry.rm.length;
        }
        (report.results[d] ??= []).push(entry);
      }
    } finally {
      model.dispose();
    }
  }
  rm?.backbone.dispose();

  console.log(`judge: ${o.judge} on ${report.prompts.length} held-out prompts (${o.prompts}, from #${o.skip_prompts}), template ${report.template}`);
  for (const d of decodings as Decoding[]) {
    const rs = report.results[d]!;
    const base = rs[0]!;
    report.effects[d] = rs.slice(1).map((r) => ({
      name: r.name,
      judge: pairedEffect(base.judge, r.judge),
      rm: base.rm && r.rm ? pairedEffect(base.rm, r.rm) : undefined,
    }));
    for (const r of rs) {
      console.log(`  ${d.padEnd(8)} ${r.name.padEnd(12)} judge mean ${fmt(r.judgeMean)} (sd ${r.judgeStd.toFixed(3)})${r.rmMean !== undefined ? `   reward model ${fmt(r.rmMean)}` : ''}`);
    }
    for (const e of report.effects[d]!) {
      const j = e.judge;
      console.log(
        `  ${d.padEnd(8)} ${e.name} − ${base.name}: judge ${fmt(j.meanDiff)} [${j.ci95[0].toFixed(3)}, ${j.ci95[1].toFixed(3)}], d_z ${j.effectSize.toFixed(2)}, ` +
          `wins/ties/losses ${j.wins}/${j.ties}/${j.losses}${e.rm ? `; reward model ${fmt(e.rm.meanDiff)}` : ''}`,
      );
    }
  }
  if (o.out) {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, JSON.stringify(report, null, 1) + '\n');
  }
}

if (invokedDirectly(import.meta.url)) runMain(main);
