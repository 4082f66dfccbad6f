/**
 * The training report: reads each stage's metrics.jsonl and samples.jsonl, charts related metrics together, and
 * writes one self-contained HTML page, headed by the run's summary.json and judge.json when given.
 */
import fs from 'node:fs';
import path from 'node:path';
import { renderGroupChart } from './charts.js';
import { readRunSummary } from './headline.js';
import { renderReportHtml, reportCharts, reportFinals, type HtmlOptions, type RenderedStage } from './html.js';
import { groupMetrics } from './metric_groups.js';
import { findStageDirs, readStageLogs } from './read_logs.js';
import { readSideBySide } from './side_by_side.js';

export { reportCharts, reportFinals, escapeHtml, renderReportHtml, pickSamples } from './html.js';
export { findStageDirs, readStageLogs, readMetrics, readSamples } from './read_logs.js';
export type { MetricPoint, SampleRecord, StageLogs, StageDir } from './read_logs.js';
export { metricChartSpec, groupChartSpec, renderMetricChart, renderGroupChart, renderSvg, thinPoints } from './charts.js';
export { groupMetrics, metricUnit, isLearningRate, type ChartGroup, type MetricGrouping } from './metric_groups.js';
export { summarizeStage, summarizeSeries, MAIN_METRICS } from './summary.js';
export { parseRunSummary, readRunSummary, renderHeadline, type RunSummary } from './headline.js';
export { parseSideBySide, readSideBySide, renderSideBySide, type SideBySide } from './side_by_side.js';

export interface ReportOptions extends Omit<HtmlOptions, 'summary' | 'sideBySide' | 'notes'> {
  /** The pipeline's summary.json: the headline at the top. A file that does not exist is noted, not an error. */
  summaryFile?: string;
  /** What `judge --out` wrote: the side-by-side answers. A file that does not exist is noted, not an error. */
  judgeFile?: string;
}

/** What `buildReport` wrote, per stage. */
export interface ReportResult {
  out: string;
  stages: { name: string; dir: string; metricKeys: string[]; chartKeys: string[]; finalKeys: string[]; charts: number; samples: number; warnings: string[] }[];
  /** Inputs named but absent (e.g. no judge.json on a route without a judge). */
  notes: string[];
  headline: boolean;
  sideBySide: boolean;
}

/**
 * Builds the report for `logDirs` (stage log directories, or parents of them) and writes it to `out`. Before writing,
 * the page is read back with `reportCharts`/`reportFinals`: every metric key of every stage must be on a chart or in
 * the final-values table.
 */
export async function buildReport(logDirs: readonly string[], out: string, options: ReportOptions = {}): Promise<ReportResult> {
  const notes: string[] = [];
  const optional = <T>(file: string | undefined, flag: string, read: (f: string) => T): T | undefined => {
    if (file === undefined) return undefined;
    if (!fs.existsSync(file)) {
      notes.push(`${flag} ${file} does not exist: its section is left out`);
      return undefined;
    }
    return read(file);
  };
  const summary = optional(options.summaryFile, '--summary', readRunSummary);
  const sideBySide = optional(options.judgeFile, '--judge', readSideBySide);

  const stages: RenderedStage[] = [];
  for (const stageDir of findStageDirs(logDirs)) {
    const logs = readStageLogs(stageDir);
    const { charts: groups, finals } = groupMetrics(logs.metrics);
    const charts: { group: (typeof groups)[number]; svg: string }[] = [];
    for (const group of groups) charts.push({ group, svg: await renderGroupChart(group, logs.metrics) });
    stages.push({ logs, charts, finals });
  }
  const { summaryFile: _s, judgeFile: _j, ...htmlOptions } = options;
  const html = renderReportHtml(stages, { ...htmlOptions, summary, sideBySide, notes });

  const charted = reportCharts(html);
  const finals = reportFinals(html);
  const result: ReportResult = {
    out,
    stages: stages.map(({ logs, charts }) => ({
      name: logs.name,
      dir: logs.dir,
      metricKeys: [...logs.metrics.keys()],
      chartKeys: charted.filter((c) => c.stage === logs.name).map((c) => c.metric),
      finalKeys: finals.filter((c) => c.stage === logs.name).map((c) => c.metric),
      charts: charts.length,
      samples: logs.samples.length,
      warnings: logs.warnings,
    })),
    notes,
    headline: summary !== undefined,
    sideBySide: sideBySide !== undefined,
  };
  for (const stage of result.stages) {
    const missing = stage.metricKeys.filter((k) => !stage.chartKeys.includes(k) && !stage.finalKeys.includes(k));
    if (missing.length > 0) throw new Error(`report: stage ${stage.name} (${stage.dir}) shows neither a chart nor a final value for ${missing.join(', ')}`);
  }

  // Written to a temporary file, then renamed: a crash never leaves half a report at `out`.
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, html);
  fs.renameSync(tmp, out);
  return result;
}
