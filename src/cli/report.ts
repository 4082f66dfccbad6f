#!/usr/bin/env node
/**
 * report: one self-contained HTML page: the run's headline (`--summary`, the pipeline's summary.json), the held-out
 * answers side by side (`--judge`, what `judge --out` wrote), and per stage a summary, charts of related metrics
 * and the sample generations. `--log_dir` may repeat (one per stage) or name a parent whose subdirectories hold
 * metrics.jsonl.
 *
 *   report --log_dir runs/demo/sft/logs --log_dir runs/demo/rm/logs --log_dir runs/demo/ppo/logs --out report.html
 *   report --log_dir runs/pipeline --summary runs/pipeline/summary.json --judge runs/pipeline/judge.json
 */
import { Command, InvalidArgumentError } from 'commander';
import { int } from './args.js';
import { runMain } from './run_main.js';
import { buildReport } from '../report/index.js';

/** Commander keeps the snake_case flag names as attribute names. */
interface ReportOptions {
  log_dir: string[];
  out: string;
  title: string;
  max_samples: number;
  summary?: string;
  judge?: string;
}

function collect(value: string, previous: string[]): string[] {
  if (value.trim() === '') throw new InvalidArgumentError('--log_dir must name a directory');
  return [...previous, value];
}

async function main(): Promise<void> {
  const cmd = new Command('report')
    .description('Write one HTML page (headline, answers side by side, charts, summary and sample generations of each stage) from training log directories.')
    .option('--log_dir <dir>', 'a stage log directory holding metrics.jsonl, or a parent of several (repeatable)', collect, [])
    .option('--summary <file>', "the pipeline's summary.json: the headline at the top (a missing file is noted in the page)")
    .option('--judge <file>', 'what `judge --out` wrote: held-out answers side by side with their scores (a missing file is noted in the page)')
    .option('--out <file>', 'the HTML file to write', 'report.html')
    .option('--title <text>', 'page title', 'Training report')
    .option('--max_samples <n>', 'sample generations shown per stage (spread evenly over the run)', int('--max_samples'), 200);
  cmd.parse();
  const o = cmd.opts<ReportOptions>();
  if (o.log_dir.length === 0) throw new Error('report: give at least one --log_dir DIR');
  const result = await buildReport(o.log_dir, o.out, { title: o.title, maxSamples: o.max_samples, summaryFile: o.summary, judgeFile: o.judge });
  for (const n of result.notes) console.warn(`warning: ${n}`);
  if (result.headline) console.log(`headline from ${o.summary}`);
  if (result.sideBySide) console.log(`answers side by side from ${o.judge}`);
  for (const s of result.stages) {
    console.log(`${s.name}: ${s.charts} charts of ${s.chartKeys.length} metrics, ${s.finalKeys.length} final values, ${s.samples} samples (${s.dir})`);
    for (const w of s.warnings) console.warn(`warning: ${w}`);
  }
  console.log(`wrote ${result.out}`);
}

runMain(main);
