/**
 * The training report: reads each stage's metrics.jsonl and samples.jsonl, renders a Vega-Lite chart per metric key,
 * and writes one self-contained HTML page.
 */
import fs from 'node:fs';
import path from 'node:path';
import { renderMetricChart } from './charts.js';
import { renderReportHtml, reportCharts, type HtmlOptions, type RenderedStage } from './html.js';
import { findStageDirs, readStageLogs } from './read_logs.js';

export { reportCharts, escapeHtml, renderReportHtml, pickSamples } from './html.js';
export { findStageDirs, readStageLogs, readMetrics, readSamples } from './read_logs.js';
export type { MetricPoint, SampleRecord, StageLogs, StageDir } from './read_logs.js';
export { metricChartSpec, renderMetricChart, renderSvg, groupKeysByPrefix, metricPrefix, thinPoints } from './charts.js';
export { summarizeStage, summarizeSeries, MAIN_METRICS } from './summary.js';

/** What `buildReport` wrote, per stage. */
export interface ReportResult {
  out: string;
  stages: { name: string; dir: string; metricKeys: string[]; chartKeys: string[]; samples: number; warnings: string[] }[];
}

/**
 * Builds the report for `logDirs` (stage log directories, or parents of them) and writes it to `out`. Before writing,
 * the page is read back with `reportCharts` and must hold a chart for every metric key of every stage.
 */
export async function buildReport(logDirs: readonly string[], out: string, options: HtmlOptions = {}): Promise<ReportResult> {
  const stages: RenderedStage[] = [];
  for (const stageDir of findStageDirs(logDirs)) {
    const logs = readStageLogs(stageDir);
    const charts = new Map<string, string>();
    for (const [key, points] of logs.metrics) charts.set(key, await renderMetricChart(key, points));
    stages.push({ logs, charts });
  }
  const html = renderReportHtml(stages, options);

  const charted = reportCharts(html);
  const result: ReportResult = {
    out,
    stages: stages.map(({ logs }) => ({
      name: logs.name,
      dir: logs.dir,
      metricKeys: [...logs.metrics.keys()],
      chartKeys: charted.filter((c) => c.stage === logs.name).map((c) => c.metric),
      samples: logs.samples.length,
      warnings: logs.warnings,
    })),
  };
  for (const stage of result.stages) {
    const missing = stage.metricKeys.filter((k) => !stage.chartKeys.includes(k));
    if (missing.length > 0) throw new Error(`report: stage ${stage.name} (${stage.dir}) has no chart for ${missing.join(', ')}`);
  }

  // Written to a temporary file, then renamed: a crash never leaves half a report at `out`.
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, html);
  fs.renameSync(tmp, out);
  return result;
}
