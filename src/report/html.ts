/**
 * The report page: one self-contained HTML file (inline CSS and SVG, no scripts, no external links). Every chart sits
 * in `<figure class="chart" data-stage=".." data-metric="..">`, which `reportCharts` reads back so CI can check that
 * each logged metric got a chart.
 */
import { groupKeysByPrefix } from './charts.js';
import type { SampleRecord, StageLogs } from './read_logs.js';
import { summarizeStage, type SummaryRow } from './summary.js';

/** A stage with its charts already rendered (metric key -> SVG). */
export interface RenderedStage {
  logs: StageLogs;
  charts: ReadonlyMap<string, string>;
}

export interface HtmlOptions {
  title?: string;
  /** Samples shown per stage; more are thinned evenly over the run, keeping the first and the last. */
  maxSamples?: number;
  /** Shown in the header; fixed in tests. */
  generatedAt?: Date;
}

export const DEFAULT_MAX_SAMPLES = 200;

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

function unescapeHtml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, name: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[name]!);
}

/** The charts a report page holds, as (stage, metric) pairs in page order: only figures that contain an `<svg>`. */
export function reportCharts(html: string): { stage: string; metric: string }[] {
  const figure = /<figure class="chart" data-stage="([^"]*)" data-metric="([^"]*)">\s*<svg[\s>][\s\S]*?<\/svg>\s*<\/figure>/g;
  return [...html.matchAll(figure)].map((m) => ({ stage: unescapeHtml(m[1]!), metric: unescapeHtml(m[2]!) }));
}

/** At most `max` samples spread evenly over the list (which is in logging order), first and last included. */
export function pickSamples(samples: readonly SampleRecord[], max: number): SampleRecord[] {
  if (samples.length <= max) return [...samples];
  if (max <= 0) return [];
  if (max === 1) return [samples[samples.length - 1]!];
  return Array.from({ length: max }, (_, i) => samples[Math.round((i * (samples.length - 1)) / (max - 1))]!);
}

/** A number in 4 significant digits, without trailing zeros. */
function formatNumber(value: number): string {
  return String(Number(value.toPrecision(4)));
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
  const parts: string[] = [];
  for (const [prefix, keys] of groupKeysByPrefix(stage.logs.metrics.keys())) {
    const figures = keys.map((key) => {
      const svg = stage.charts.get(key);
      if (svg === undefined) throw new Error(`report: no chart rendered for metric '${key}' of stage ${stage.logs.name}`);
      return `<figure class="chart" data-stage="${escapeHtml(stage.logs.name)}" data-metric="${escapeHtml(key)}">${svg}</figure>`;
    });
    parts.push(`<h4>${escapeHtml(prefix)}</h4>\n<div class="charts">\n${figures.join('\n')}\n</div>`);
  }
  return parts.join('\n');
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
    `<h3>Metrics (${logs.metrics.size})</h3>`,
    chartsSection(stage),
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
`;

/** The whole report page. */
export function renderReportHtml(stages: readonly RenderedStage[], options: HtmlOptions = {}): string {
  const title = options.title ?? 'Training report';
  const maxSamples = options.maxSamples ?? DEFAULT_MAX_SAMPLES;
  const generatedAt = (options.generatedAt ?? new Date()).toISOString();
  const nav = stages.map((s, i) => `<a href="#stage-${i}">${escapeHtml(s.logs.name)}</a>`).join('');
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
    `<header><h1>${escapeHtml(title)}</h1><p class="note">Generated ${escapeHtml(generatedAt)} from ${stages.length} stage log director${stages.length === 1 ? 'y' : 'ies'}.</p><nav>${nav}</nav></header>`,
    ...stages.map((s, i) => stageSection(s, i, maxSamples)),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
