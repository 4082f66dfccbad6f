/**
 * Static SVG line charts, one per group of related metrics (see metric_groups.ts): a Vega-Lite spec compiled to Vega and rendered headless
 * (`renderer: 'none'`, `toSVG()`), so axes, ticks and labels come from Vega, and nothing is fetched: the data is
 * inline and the loader refuses any URL.
 */
import { loader as vegaLoader, parse as parseVega, View, type Loader } from 'vega';
import { compile as compileVegaLite, type TopLevelSpec } from 'vega-lite';
import type { MetricPoint } from './read_logs.js';
import { isLearningRate, metricUnit, type ChartGroup } from './metric_groups.js';

/** Charts draw at most this many points; longer series are thinned keeping each bucket's min and max. */
export const MAX_CHART_POINTS = 1000;

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

type Point = { step: number; value: number };

/** Line colors (Tableau 10's first ones): the first series blue, the second orange, as in most plotting tools. */
const PALETTE = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2'];

/**
 * Tick label formats. The step axis shows integers with thousands separators (`12,500`, never `1.25e+4`), and
 * `tickMinStep: 1` keeps fractional steps off it. Values take Vega's default: fixed decimals chosen from the tick
 * spacing (`0.0010`, `0.0012`; `4.830`, `4.835`), so neighbouring ticks never print the same label and no exponent
 * appears (`~r` dropped a digit on some domains: 0 … 0.00114 printed `0.001` for both 0.0010 and 0.0012). Learning
 * rates (1e-5 .. 1e-3) read best in exponent notation, again with the precision left to the tick spacing.
 */
export const STEP_FORMAT = ',d';
export const LR_FORMAT = '~e';

/** The finite points of a series, thinned for drawing, and the notes a reader needs about what was left out. */
function drawable(key: string, points: readonly MetricPoint[], multi: boolean): { drawn: Point[]; notes: string[] } {
  const finite = points.filter((p): p is Point => p.value !== null && Number.isFinite(p.value));
  const drawn = thinPoints(finite);
  const notes: string[] = [];
  const who = multi ? `${key}: ` : '';
  if (finite.length === 0) notes.push(`${who}no finite values logged`);
  else if (finite.length < points.length) notes.push(`${who}${points.length - finite.length} NaN/Infinity values not drawn`);
  if (drawn.length < finite.length) notes.push(`${who}thinned to ${drawn.length} of ${finite.length} points (min/max kept)`);
  return { drawn, notes };
}

/** The Vega-Lite spec of one chart: the group's metrics against step, one line each, with a legend when there are several. */
export function groupChartSpec(group: ChartGroup, metrics: ReadonlyMap<string, readonly MetricPoint[]>): TopLevelSpec {
  const multi = group.keys.length > 1;
  const values: (Point & { series: string; quantity: string; split: 'train' | 'eval' })[] = [];
  const notes: string[] = [];
  let longest = 0;
  for (const key of group.keys) {
    const points = metrics.get(key);
    if (!points) throw new Error(`report: chart '${group.title}' names metric '${key}', which was not logged`);
    const { drawn, notes: n } = drawable(key, points, multi);
    const split = key.startsWith('eval/') ? ('eval' as const) : ('train' as const);
    values.push(...drawn.map((p) => ({ ...p, series: key, quantity: key.replace(/^eval\//, ''), split })));
    notes.push(...n);
    longest = Math.max(longest, drawn.length);
  }
  const valueAxis = group.kind === 'lr' ? { labelExpr: `datum.value === 0 ? '0' : format(datum.value, '${LR_FORMAT}')` } : {};
  // Points only help to read short series; on long ones they hide the line.
  const mark = { type: 'line' as const, point: longest <= 40, strokeWidth: 1.5, clip: true };
  const x = { field: 'step', type: 'quantitative' as const, title: 'step', axis: { format: STEP_FORMAT, tickMinStep: 1, tickCount: 6 } };
  const colorScale = { domain: group.keys, range: PALETTE.slice(0, Math.max(1, group.keys.length)) };
  const legend = multi ? { orient: 'bottom' as const, title: null, direction: 'vertical' as const, labelLimit: 400 } : null;
  const base = {
    title: { text: group.title, anchor: 'start' as const, ...(notes.length > 0 ? { subtitle: notes.join('; ') } : {}) },
    width: 360,
    height: 180,
    background: 'white',
    data: { values },
  };
  if (group.axis === 'dual' && group.keys.length === 2) {
    return {
      ...base,
      layer: group.keys.map((key, i) => ({
        transform: [{ filter: { field: 'series', equal: key } }],
        mark,
        encoding: {
          x,
          y: {
            field: 'value', type: 'quantitative' as const, title: metricUnit(key) ?? key, scale: { zero: false },
            axis: { ...valueAxis, orient: i === 0 ? ('left' as const) : ('right' as const), titleColor: PALETTE[i]! },
          },
          color: { datum: key, type: 'nominal' as const, scale: colorScale, legend },
        },
      })),
      resolve: { scale: { y: 'independent' } },
    };
  }
  const unit = new Set(group.keys.map((k) => metricUnit(k)));
  const quantities = [...new Set(group.keys.map((k) => k.replace(/^eval\//, '')))];
  const byQuantity = quantities.length > 1 && quantities.length < group.keys.length;
  return {
    ...base,
    mark,
    encoding: {
      x,
      y: { field: 'value', type: 'quantitative', title: unit.size === 1 ? [...unit][0] : null, scale: { zero: false }, axis: valueAxis },
      // Several quantities each with its held-out twin (chosen and rejected, train and eval): one color per
      // quantity, eval dashed, and a legend for each. Otherwise one color per line.
      ...(byQuantity
        ? { color: { field: 'quantity', type: 'nominal' as const, scale: { domain: quantities, range: PALETTE.slice(0, quantities.length) }, legend } }
        : { color: { field: 'series', type: 'nominal' as const, scale: colorScale, legend } }),
      ...(multi && group.keys.some((k) => k.startsWith('eval/'))
        ? { strokeDash: { field: 'split', type: 'nominal' as const, scale: { domain: ['train', 'eval'], range: [[1, 0], [5, 3]] }, legend: byQuantity ? { ...legend, symbolType: 'stroke' } : null } }
        : {}),
    },
  };
}

/** The Vega-Lite spec for one metric on its own. */
export function metricChartSpec(key: string, points: readonly MetricPoint[]): TopLevelSpec {
  const kind = isLearningRate(key) ? 'lr' : 'value';
  return groupChartSpec({ title: key, keys: [key], axis: 'shared', kind }, new Map([[key, points]]));
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

/** The SVG chart of one group of metrics. */
export function renderGroupChart(group: ChartGroup, metrics: ReadonlyMap<string, readonly MetricPoint[]>): Promise<string> {
  return renderSvg(groupChartSpec(group, metrics));
}
