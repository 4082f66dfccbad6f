#!/usr/bin/env node
/**
 * report: one self-contained HTML page with a chart per logged metric, a summary and the sample generations of each
 * stage. `--log_dir` may repeat (one per stage) or name a parent whose subdirectories hold metrics.jsonl.
 *
 *   report --log_dir runs/demo/sft/logs --log_dir runs/demo/rm/logs --log_dir runs/demo/ppo/logs --out report.html
 *   report --log_dir runs/demo
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
}

function collect(value: string, previous: string[]): string[] {
  if (value.trim() === '') throw new InvalidArgumentError('--log_dir must name a directory');
  return [...previous, value];
}

async function main(): Promise<void> {
  const cmd = new Command('report')
    .description('Write one HTML page (a chart per metric, a summary and the sample generations of each stage) from training log directories.')
    .option('--log_dir <dir>', 'a stage log directory holding metrics.jsonl, or a parent of several (repeatable)', collect, [])
    .option('--out <file>', 'the HTML file to write', 'report.html')
    .option('--title <text>', 'page title', 'Training report')
    .option('--max_samples <n>', 'sample generations shown per stage (spread evenly over the run)', int('--max_samples'), 200);
  cmd.parse();
  const o = cmd.opts<ReportOptions>();
  if (o.log_dir.length === 0) throw new Error('report: give at least one --log_dir DIR');
  const result = await buildReport(o.log_dir, o.out, { title: o.title, maxSamples: o.max_samples });
  for (const s of result.stages) {
    console.log(`${s.name}: ${s.chartKeys.length} charts, ${s.samples} samples (${s.dir})`);
    for (const w of s.warnings) console.warn(`warning: ${w}`);
  }
  console.log(`wrote ${result.out}`);
}

runMain(main);
