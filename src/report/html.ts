/**
 * The report page: one self-contained HTML file (inline CSS and SVG, no scripts, no external links): the headline
 * (summary.json), the answers side by side (judge.json), then per stage a summary table, the charts and the samples.
 * Every chart sits in `<figure class="chart" data-stage=".." data-metrics="[..]">` and every single-valued metric in
 * a `<tr data-final-metric="..">` of the final-values table; `reportCharts` and `reportFinals` read them back so CI
 * can check that each logged metric is shown.
 */
import { escapeHtml, formatNumber, unescapeHtml } from './escape.js';
import { renderHeadline, type RunSummary } from './headline.js';
import type { ChartGroup } from './metric_groups.js';
import type { MetricPoint, SampleRecord, StageLogs } from './read_logs.js';
import { renderSideBySide, type SideBySide } from './side_by_side.js';
import { summarizeSeries, summarizeStage, type SummaryRow } from './summary.js';

export { escapeHtml } from './escape.js';

/** A stage with its charts already rendered, and the metrics shown as final values instead. */
export interface RenderedStage {
  logs: StageLogs;
  charts: readonly { group: ChartGroup; svg: string }[];
  finals: readonly string[];
}

export interface HtmlOptions {
  title?: string;
  /** Samples shown per stage; more are thinned evenly over the run, keeping the first and the last. */
  maxSamples?: number;
  /** Shown in the header; fixed in tests. */
  generatedAt?: Date;
  /** The headline at the top, from summary.json. */
  summary?: RunSummary;
  /** The side-by-side answers, from judge.json. */
  sideBySide?: SideBySide;
  /** Notes shown under the title (e.g. an input that was named but not found). */
  notes?: readonly string[];
}

export const DEFAULT_MAX_SAMPLES = 200;

/** The charts a report page holds, as (stage, metric) pairs in page order: only figures that contain an `<svg>`. */
export function reportCharts(html: string): { stage: string; metric: string }[] {
  const figure = /<figure class="chart" data-stage="([^"]*)" data-metrics="([^"]*)">\s*<svg[\s>][\s\S]*?<\/svg>\s*<\/figure>/g;
  return [...html.matchAll(figure)].flatMap((m) => {
    const stage = unescapeHtml(m[1]!);
    return (JSON.parse(unescapeHtml(m[2]!)) as string[]).map((metric) => ({ stage, metric }));
  });
}

/** The metrics a report page shows as final values (one logged value each), as (stage, metric) pairs. */
export function reportFinals(html: string): { stage: string; metric: string }[] {
  const row = /<tr data-stage="([^"]*)" data-final-metric="([^"]*)">/g;
  return [...html.matchAll(row)].map((m) => ({ stage: unescapeHtml(m[1]!), metric: unescapeHtml(m[2]!) }));
}

/** At most `max` samples spread evenly over the list (which is in logging order), first and last included. */
export function pickSamples(samples: readonly SampleRecord[], max: number): SampleRecord[] {
  if (samples.length <= max) return [...samples];
  if (max <= 0) return [];
  if (max === 1) return [samples[samples.length - 1]!];
  return Array.from({ length: max }, (_, i) => samples[Math.round((i * (samples.length - 1)) / (max - 1))]!);
}

function summaryTable(rows: SummaryRow[]): string {
  if (rows.length === 0) return '<p class="note">No metrics logged.</p>';
  const cell = (p: SummaryRow['first']) => (p ? `${formatNumber(p.value)} <span class="step">@${p.step}</span>` : '–');
  const body = rows
    .map((r) => `<tr><th scope="row">${escapeHtml(r.key)}</th><td>${r.count}</td><td>${cell(r.first)}</td><td>${cell(r.last)}</td><td>${cell(r.min)}</td><td>${cell(r.max)}</td></tr>`)
    .join('\n');
  return `<table class="summary"><thead><tr><th>metric</th><th>values</th><th>first</th><th>last</th><th>min</th><th>max</th></tr></thead>\n<tbody>\n${body}\n</tbody></table>`;
}

function chartsSection(stage: RenderedStage): string {
  if (stage.charts.length === 0) return '<p class="note">No metric has two or more values to chart.</p>';
  const figures = stage.charts.map(
    ({ group, svg }) => `<figure class="chart" data-stage="${escapeHtml(stage.logs.name)}" data-metrics="${escapeHtml(JSON.stringify(group.keys))}">${svg}</figure>`,
  );
  return `<div class="charts">\n${figures.join('\n')}\n</div>`;
}

/** Metrics logged once or never changing: a chart of one point or a flat line says nothing, a table row does. */
function finalsTable(stage: RenderedStage): string {
  if (stage.finals.length === 0) return '';
  const cell = (points: readonly MetricPoint[]) => {
    const row = summarizeSeries('', points);
    if (!row.last) return 'no finite value';
    if (row.count > 1) return `${formatNumber(row.last.value)} <span class="step">constant over ${row.count} values, steps ${row.first!.step}–${row.last.step}</span>`;
    return `${formatNumber(row.last.value)} <span class="step">@${row.last.step}</span>`;
  };
  const rows = stage.finals.map(
    (key) =>
      `<tr data-stage="${escapeHtml(stage.logs.name)}" data-final-metric="${escapeHtml(key)}"><th scope="row">${escapeHtml(key)}</th><td>${cell(stage.logs.metrics.get(key)!)}</td></tr>`,
  );
  return `<h3>Final values (logged once or constant)</h3>\n<table class="finals"><thead><tr><th>metric</th><th>value</th></tr></thead>\n<tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function samplesSection(samples: readonly SampleRecord[], maxSamples: number): string {
  if (samples.length === 0) return '<p class="note">No sample generations logged (samples.jsonl).</p>';
  const shown = pickSamples(samples, maxSamples);
  const withTime = shown.some((s) => s.wallTime !== undefined);
  const note = shown.length < samples.length ? `<p class="note">Showing ${shown.length} of ${samples.length} samples, spread over the run.</p>\n` : '';
  const rows = shown
    .map((s) => {
      const time = withTime ? `<td>${s.wallTime !== undefined ? escapeHtml(new Date(s.wallTime * 1000).toISOString()) : ''}</td>` : '';
      return `<tr><td>${s.step}</td><td>${escapeHtml(s.tag)}</td>${time}<td class="text">${escapeHtml(s.text)}</td></tr>`;
    })
    .join('\n');
  const head = `<tr><th>step</th><th>tag</th>${withTime ? '<th>time (UTC)</th>' : ''}<th>text</th></tr>`;
  return `${note}<table class="samples"><thead>${head}</thead>\n<tbody>\n${rows}\n</tbody></table>`;
}

function stageSection(stage: RenderedStage, index: number, maxSamples: number): string {
  const { logs } = stage;
  const warnings = logs.warnings.length > 0 ? `<ul class="warnings">${logs.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>\n` : '';
  return [
    `<section class="stage" id="stage-${index}">`,
    `<h2>${escapeHtml(logs.name)}</h2>`,
    `<p class="dir">${escapeHtml(logs.dir)}</p>`,
    warnings + '<h3>Summary</h3>',
    summaryTable(summarizeStage(logs.metrics)),
    `<h3>Charts (${stage.charts.length}, of ${logs.metrics.size} metrics)</h3>`,
    chartsSection(stage),
    finalsTable(stage),
    `<h3>Samples (${logs.samples.length})</h3>`,
    samplesSection(logs.samples, maxSamples),
    '</section>',
  ].join('\n');
}

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 1rem 2rem; color: #222; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.5rem; }
h4 { margin: 1rem 0 .3rem; font-family: ui-monospace, monospace; color: #555; }
.dir, .note, .step { color: #777; font-size: .85rem; }
.warnings { color: #a40; }
.charts { display: flex; flex-wrap: wrap; gap: .5rem; }
figure.chart { margin: 0; border: 1px solid #eee; }
figure.chart svg { display: block; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
table.summary td { font-variant-numeric: tabular-nums; }
table.samples td.text { white-space: pre-wrap; font-family: ui-monospace, monospace; max-width: 80ch; }
nav a { margin-right: 1rem; }
.headline .what { font-size: 1.05rem; }
.cards { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 1rem; margin: 1rem 0; }
.card { border: 1px solid #ddd; border-left: 6px solid #bbb; border-radius: 4px; padding: .6rem 1rem; flex: 1 1 18rem; max-width: 32rem; }
.card.good { border-left-color: #3a9a4a; }
.card.bad { border-left-color: #c8453c; }
.card h3 { margin: 0 0 .3rem; font-size: 1rem; color: #555; text-transform: uppercase; letter-spacing: .04em; }
.card p { margin: .2rem 0; font-size: .9rem; }
.card p.big { font-size: 1.8rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card p.time, table.times td { color: #777; font-variant-numeric: tabular-nums; }
table.times tr.total th, table.times tr.total td { font-weight: 600; color: #222; }
p.effect { margin: .3rem 0 .6rem; }
p.effect.up { color: #2d7a3a; }
p.effect.down { color: #b03a32; }
table.answers td.text { white-space: pre-wrap; max-width: 40ch; overflow-wrap: anywhere; }
table.answers td.prompt { color: #555; }
table.answers td.num { font-variant-numeric: tabular-nums; text-align: right; }
table.answers td.win { background: #e3f4e5; }
table.answers td.loss { background: #fbe5e3; }
`;

/** The whole report page. */
export function renderReportHtml(stages: readonly RenderedStage[], options: HtmlOptions = {}): string {
  const title = options.title ?? 'Training report';
  const maxSamples = options.maxSamples ?? DEFAULT_MAX_SAMPLES;
  const generatedAt = (options.generatedAt ?? new Date()).toISOString();
  const links = [
    ...(options.summary ? ['<a href="#headline">result</a>'] : []),
    ...(options.sideBySide ? ['<a href="#side-by-side">answers</a>'] : []),
    ...stages.map((s, i) => `<a href="#stage-${i}">${escapeHtml(s.logs.name)}</a>`),
  ];
  const notes = (options.notes ?? []).map((n) => `<p class="note warnings">${escapeHtml(n)}</p>`).join('');
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<header><h1>${escapeHtml(title)}</h1><p class="note">Generated ${escapeHtml(generatedAt)} from ${stages.length} stage log director${stages.length === 1 ? 'y' : 'ies'}.</p>${notes}<nav>${links.join('')}</nav></header>`,
    ...(options.summary ? [renderHeadline(options.summary)] : []),
    ...(options.sideBySide ? [renderSideBySide(options.sideBySide)] : []),
    ...stages.map((s, i) => stageSection(s, i, maxSamples)),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
