import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  buildReport,
  escapeHtml,
  findStageDirs,
  metricChartSpec,
  pickSamples,
  readMetrics,
  reportCharts,
  renderMetricChart,
  reportFinals,
  summarizeSeries,
  thinPoints,
} from '../src/report/index.js';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'report-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeJsonl(file: string, records: object[], trailer = ''): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, records.map((r) => JSON.stringify(r) + '\n').join('') + trailer);
}

const EVIL_TEXT = '<script>alert("x")</script> & <b>bold</b>';

/** An SFT-like and a reward-like stage, as MetricsLogger would write them. */
function writeDemoRun(root: string): { sft: string; rm: string } {
  const sft = path.join(root, 'sft', 'logs');
  const rm = path.join(root, 'rm', 'logs');
  writeJsonl(
    path.join(sft, 'metrics.jsonl'),
    [1, 2, 3, 4].map((step) => ({ step, 'train/loss': 3 - step * 0.5, 'train/lr': 1e-4 * step, 'train/grad_norm': step === 3 ? null : 1 / step })),
  );
  fs.appendFileSync(path.join(sft, 'metrics.jsonl'), JSON.stringify({ step: 4, 'eval/loss': 1.25 }) + '\n');
  writeJsonl(path.join(sft, 'samples.jsonl'), [
    { step: 2, tag: 'sample/0', text: EVIL_TEXT, wall_time: 1_700_000_000 },
    { step: 4, tag: 'sample/0', text: 'line one\nline two' },
  ]);
  writeJsonl(
    path.join(rm, 'metrics.jsonl'),
    [1, 2, 3].map((step) => ({ step, 'train/loss': 0.7 / step, 'reward/accuracy': 0.5 + step * 0.1, 'reward/margin': step * 0.2 })),
  );
  // Stages sorted by when their metrics were last written: sft first.
  fs.utimesSync(path.join(sft, 'metrics.jsonl'), new Date(1_000_000), new Date(1_000_000));
  return { sft, rm };
}

describe('buildReport', () => {
  it('charts every metric with two or more values, lists single values, escapes samples, and links nothing external', async () => {
    const { sft, rm } = writeDemoRun(tmp);
    const out = path.join(tmp, 'out', 'report.html');
    const result = await buildReport([sft, rm], out);
    const html = fs.readFileSync(out, 'utf8');

    const expected = [
      { stage: 'sft', metric: 'train/loss' },
      { stage: 'sft', metric: 'train/lr' },
      { stage: 'sft', metric: 'train/grad_norm' },
      { stage: 'rm', metric: 'train/loss' },
      { stage: 'rm', metric: 'reward/accuracy' },
      { stage: 'rm', metric: 'reward/margin' },
    ];
    expect(reportCharts(html)).toEqual(expected);
    expect(html.match(/<svg[\s>]/g)).toHaveLength(expected.length);
    // eval/loss was logged once: a table row, not a one-point chart.
    expect(reportFinals(html)).toEqual([{ stage: 'sft', metric: 'eval/loss' }]);
    expect(result.stages.map((s) => [s.name, s.chartKeys, s.finalKeys])).toEqual([
      ['sft', ['train/loss', 'train/lr', 'train/grad_norm'], ['eval/loss']],
      ['rm', ['train/loss', 'reward/accuracy', 'reward/margin'], []],
    ]);
    // Vega drew real axes: tick labels of the step axis and the metric title are in the SVG text.
    expect(html).toMatch(/<text[^>]*>train\/grad_norm<\/text>/);
    expect(html).toContain('1 NaN/Infinity values not drawn');

    expect(html).toMatch(/<tr data-stage="sft" data-final-metric="eval\/loss"><th scope="row">eval\/loss<\/th><td>1\.25 <span class="step">@4<\/span><\/td>/);

    // Samples: escaped, never raw.
    expect(html).not.toContain(EVIL_TEXT);
    expect(html).toContain(escapeHtml(EVIL_TEXT));
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(html).toContain('line one\nline two');
    expect(html).toContain('2023-11-14T22:13:20.000Z');

    // Self-contained: no scripts, no links, no URLs at all.
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link/i);
    expect(html).not.toMatch(/http/i);
    expect(html).not.toMatch(/@import|url\((?!#)/i); // only same-document clip-path references

    // Summary: first/last/min of train/loss for SFT (3-0.5*step over steps 1..4).
    expect(html).toMatch(/<th scope="row">train\/loss<\/th><td>4<\/td><td>2\.5 <span class="step">@1<\/span><\/td><td>1 <span class="step">@4<\/span><\/td><td>1 <span class="step">@4<\/span>/);
    expect(html).toMatch(/<th scope="row">reward\/accuracy<\/th>/);
    expect(html).not.toMatch(/<th scope="row">train\/lr<\/th>/); // not a headline metric
  });

  it('finds stages in the subdirectories of a parent directory and names them after their folders', async () => {
    writeDemoRun(tmp);
    expect(findStageDirs([tmp]).map((s) => s.name)).toEqual(['sft', 'rm']);
    const out = path.join(tmp, 'report.html');
    const result = await buildReport([tmp], out);
    expect(result.stages.map((s) => s.name)).toEqual(['sft', 'rm']);
    expect(reportCharts(fs.readFileSync(out, 'utf8'))).toHaveLength(6);
  });

  it('escapes metric names in charts, tables and attributes', async () => {
    const evil = 'x/"><img src=q onerror=alert(1)>';
    const dir = path.join(tmp, 'evil', 'logs');
    writeJsonl(path.join(dir, 'metrics.jsonl'), [{ step: 1, [evil]: 1, [`${evil}once`]: 3 }, { step: 2, [evil]: 2 }]);
    const out = path.join(tmp, 'evil.html');
    await buildReport([dir], out);
    const html = fs.readFileSync(out, 'utf8');
    expect(html).not.toMatch(/<img/i);
    expect(reportCharts(html)).toEqual([{ stage: 'evil', metric: evil }]);
    expect(reportFinals(html)).toEqual([{ stage: 'evil', metric: `${evil}once` }]);
  });

  it('names the directory when metrics.jsonl is missing', async () => {
    const empty = path.join(tmp, 'empty_logs');
    fs.mkdirSync(empty);
    await expect(buildReport([empty], path.join(tmp, 'r.html'))).rejects.toThrow(`no metrics.jsonl in ${empty}`);
    await expect(buildReport([path.join(tmp, 'nope')], path.join(tmp, 'r.html'))).rejects.toThrow(`${path.join(tmp, 'nope')} does not exist`);
    expect(fs.existsSync(path.join(tmp, 'r.html'))).toBe(false);
  });

  it('names file, line and field for a bad record, and skips a half-written last line', () => {
    const file = path.join(tmp, 'logs', 'metrics.jsonl');
    writeJsonl(file, [{ step: 1, 'train/loss': 1 }, { step: 2, 'train/loss': 'high' }]);
    expect(() => readMetrics(file)).toThrow(`${file}:2: field 'train/loss' must be a number`);
    writeJsonl(file, [{ step: 1, 'train/loss': 1 }, { step: -1, 'train/loss': 1 }]);
    expect(() => readMetrics(file)).toThrow(`${file}:2: field 'step' must be an integer >= 0`);
    writeJsonl(file, [{ step: 1, 'train/loss': 1 }, { step: 2, 'train/loss': 0.5 }], '{"step": 3, "train/lo');
    const warnings: string[] = [];
    expect(readMetrics(file, warnings).get('train/loss')).toEqual([{ step: 1, value: 1 }, { step: 2, value: 0.5 }]);
    expect(warnings[0]).toContain(`${file}:3: skipped an incomplete last line`);
  });

  it('keeps the later value of a step logged twice (a resumed run)', () => {
    const file = path.join(tmp, 'metrics.jsonl');
    writeJsonl(file, [{ step: 1, 'train/loss': 3 }, { step: 2, 'train/loss': 2 }, { step: 2, 'train/loss': 1.5 }, { step: 3, 'train/loss': 1 }]);
    expect(readMetrics(file).get('train/loss')!.map((p) => p.value)).toEqual([3, 1.5, 1]);
  });
});

describe('chart axes', () => {
  it('value ticks never repeat a label nor print an exponent (0 … 0.00114 gave 0.001 twice under ~r)', async () => {
    for (const values of [[0, 0.001138940453529358], [0, 4500], [4.8599, 4.8315], [-2.777, -3.004]]) {
      const svg = await renderMetricChart('objective/kl_k3', values.map((value, i) => ({ step: i + 1, value })));
      const labels = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!).filter((t) => /^[−-]?[\d,.]+$/.test(t));
      const valueLabels = labels.filter((t) => t.includes('.') || Number(t.replace(/,/g, '')) > 2); // the step axis reads 1, 2
      expect(valueLabels.length).toBeGreaterThan(2);
      expect(new Set(valueLabels).size).toBe(valueLabels.length);
      expect(labels.some((t) => /e\+/.test(t))).toBe(false);
    }
  });
});

describe('report helpers', () => {
  it('thins long series to the limit, keeping the extremes', () => {
    const points = Array.from({ length: 10_000 }, (_, i) => ({ step: i, value: Math.sin(i / 50) }));
    points[5_001] = { step: 5_001, value: 42 }; // a spike must survive
    const thin = thinPoints(points, 1000);
    expect(thin.length).toBeLessThanOrEqual(1000);
    expect(thin.some((p) => p.value === 42)).toBe(true);
    expect(thin.map((p) => p.step)).toEqual([...thin.map((p) => p.step)].sort((a, b) => a - b));
    expect(metricChartSpec('train/loss', points).title).toMatchObject({ subtitle: expect.stringContaining('thinned to') });
  });

  it('summarizes first/last/min/max over finite values', () => {
    const row = summarizeSeries('k', [{ step: 0, value: null }, { step: 1, value: 2 }, { step: 2, value: -1 }, { step: 5, value: 4 }]);
    expect(row).toMatchObject({ count: 3, first: { step: 1, value: 2 }, last: { step: 5, value: 4 }, min: { step: 2, value: -1 }, max: { step: 5, value: 4 } });
  });

  it('picks samples evenly, first and last included', () => {
    const samples = Array.from({ length: 10 }, (_, i) => ({ step: i, tag: 't', text: String(i) }));
    expect(pickSamples(samples, 4).map((s) => s.step)).toEqual([0, 3, 6, 9]);
    expect(pickSamples(samples, 20)).toHaveLength(10);
  });
});

describe('report CLI', () => {
  it('writes the page and prints what it charted', () => {
    const { sft, rm } = writeDemoRun(tmp);
    const out = path.join(tmp, 'cli.html');
    const tsx = path.resolve('node_modules/.bin/tsx');
    const stdout = execFileSync(tsx, ['src/cli/report.ts', '--log_dir', sft, '--log_dir', rm, '--out', out], { encoding: 'utf8' });
    expect(stdout).toContain('sft: 3 charts of 3 metrics, 1 final values, 2 samples');
    expect(stdout).toContain('rm: 3 charts of 3 metrics, 0 final values, 0 samples');
    expect(reportCharts(fs.readFileSync(out, 'utf8'))).toHaveLength(6);
    let stderr = '';
    try {
      execFileSync(tsx, ['src/cli/report.ts', '--log_dir', path.join(tmp, 'missing')], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      stderr = String((e as { stderr: string }).stderr);
    }
    expect(stderr).toContain(`error: report: log directory ${path.join(tmp, 'missing')} does not exist`);
  });
});
