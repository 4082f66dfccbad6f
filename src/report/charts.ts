/**
 * One static SVG line chart per metric key: a Vega-Lite spec compiled to Vega and rendered headless
 * (`renderer: 'none'`, `toSVG()`), so axes, ticks and labels come from Vega, and nothing is fetched: the data is
 * inline and the loader refuses any URL.
 */
import { loader as vegaLoader, parse as parseVega, View, type Loader } from 'vega';
import { compile as compileVegaLite, type TopLevelSpec } from 'vega-lite';
import type { MetricPoint } from './read_logs.js';

/** Charts draw at most this many points; longer series are thinned keeping each bucket's min and max. */
export const MAX_CHART_POINTS = 1000;

/** `train/loss` -> `train/`; `eval/reward/accuracy` -> `eval/`; a key without a slash -> `other`. */
export function metricPrefix(key: string): string {
  const slash = key.indexOf('/');
  return slash > 0 ? key.slice(0, slash + 1) : 'other';
}

/** Keys grouped by prefix, groups and keys in first-seen order. */
export function groupKeysByPrefix(keys: Iterable<string>): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const key of keys) {
    const prefix = metricPrefix(key);
    const group = groups.get(prefix);
    if (group) group.push(key);
    else groups.set(prefix, [key]);
  }
  return groups;
}

/**
 * At most `maxPoints` of `points` (finite values only), keeping spikes: the series is cut into buckets and each
 * keeps its lowest and highest point, in step order.
 */
export function thinPoints(points: readonly { step: number; value: number }[], maxPoints = MAX_CHART_POINTS): { step: number; value: number }[] {
  if (points.length <= maxPoints) return [...points];
  const buckets = Math.max(1, Math.floor(maxPoints / 2));
  const out: { step: number; value: number }[] = [];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * points.length) / buckets);
    const end = Math.floor(((b + 1) * points.length) / buckets);
    let lo = start;
    let hi = start;
    for (let i = start; i < end; i++) {
      if (points[i]!.value < points[lo]!.value) lo = i;
      if (points[i]!.value > points[hi]!.value) hi = i;
    }
    out.push(points[Math.min(lo, hi)]!);
    if (lo !== hi) out.push(points[Math.max(lo, hi)]!);
  }
  return out;
}

/** The Vega-Lite spec for one metric: value against step, with a note when values were dropped or thinned. */
export function metricChartSpec(key: string, points: readonly MetricPoint[]): TopLevelSpec {
  const finite = points.filter((p): p is { step: number; value: number } => p.value !== null && Number.isFinite(p.value));
  const drawn = thinPoints(finite);
  const notes: string[] = [];
  if (finite.length === 0) notes.push('no finite values logged');
  else if (finite.length < points.length) notes.push(`${points.length - finite.length} NaN/Infinity values not drawn`);
  if (drawn.length < finite.length) notes.push(`thinned to ${drawn.length} of ${finite.length} points (min/max kept)`);
  return {
    title: { text: key, anchor: 'start', ...(notes.length > 0 ? { subtitle: notes.join('; ') } : {}) },
    width: 320,
    height: 160,
    background: 'white',
    data: { values: drawn },
    // Points only help to read short series; on long ones they hide the line.
    mark: { type: 'line', point: drawn.length <= 60, strokeWidth: 1.5, clip: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', axis: { tickMinStep: 1, format: '~s' } },
      y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false }, axis: { format: '.3~g' } },
    },
  };
}

/** A Vega loader that refuses every URL: the report must render from inline data, offline. */
function offlineLoader(): Loader {
  const refuse = (uri: string): Promise<never> => Promise.reject(new Error(`report charts load no external resources (asked for ${uri})`));
  return { ...vegaLoader(), load: refuse, sanitize: refuse, http: refuse, file: refuse };
}

/** Renders a Vega-Lite spec to an SVG string for inline use in HTML (namespace attributes dropped: HTML5 implies them). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const vegaSpec = compileVegaLite(spec).spec;
  const view = new View(parseVega(vegaSpec), { renderer: 'none', loader: offlineLoader() });
  try {
    const svg = await view.toSVG();
    return svg.replace(/^<svg([^>]*)>/, (_match: string, attrs: string) => `<svg${attrs.replace(/\s+xmlns(:\w+)?="[^"]*"/g, '')}>`);
  } finally {
    view.finalize();
  }
}

/** The SVG chart of one metric. */
export function renderMetricChart(key: string, points: readonly MetricPoint[]): Promise<string> {
  return renderSvg(metricChartSpec(key, points));
}
