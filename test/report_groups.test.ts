import { describe, expect, it } from 'vitest';
import { groupMetrics, metricUnit, renderGroupChart, type MetricPoint } from '../src/report/index.js';

const series = (n: number, f: (i: number) => number | null, step0 = 1, stride = 1): MetricPoint[] =>
  Array.from({ length: n }, (_, i) => ({ step: step0 + i * stride, value: f(i) }));

/** The text of every tick label, one list per labelled axis of a rendered chart (x first). */
function axisLabels(svg: string): string[][] {
  return [...svg.matchAll(/class="mark-text role-axis-label"[^>]*>([\s\S]*?)<\/g>/g)].map((m) => [...m[1]!.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]!));
}

describe('groupMetrics', () => {
  it('puts related metrics on one chart and single or constant values in the final-values list', () => {
    const metrics = new Map<string, MetricPoint[]>([
      ['train/loss', series(10, (i) => 3 - i * 0.1)],
      ['train/lr', series(10, (i) => 1e-4 * i)],
      ['eval/loss', series(3, (i) => 3 - i * 0.2, 0, 5)],
      ['rewards/chosen', series(10, (i) => i)],
      ['rewards/rejected', series(10, (i) => -i)],
      ['reward/mean', series(10, (i) => i * 0.2)],
      ['objective/kl', series(10, (i) => i * 0.01)],
      ['objective/kl_coef', series(10, () => 0.05)],
      ['train/actor_grad_norm', series(10, (i) => 5 + (i % 2))],
      ['train/critic_grad_norm', series(10, (i) => 0.5 + (i % 3) * 0.1)],
      ['reward/accuracy', series(10, (i) => 0.5 + i * 0.04)],
      ['eval/reward/accuracy', series(2, (i) => 0.6 + i * 0.2)],
      ['eval/perplexity', [{ step: 9, value: 20 }]],
      ['train/grad_norm', series(10, (i) => (i === 3 ? null : 1 + i))],
    ]);
    const { charts, finals } = groupMetrics(metrics);
    expect(charts.map((c) => [c.title, c.keys, c.axis, c.kind])).toEqual([
      ['train/loss vs eval/loss', ['train/loss', 'eval/loss'], 'shared', 'value'],
      ['train/lr', ['train/lr'], 'shared', 'lr'],
      ['rewards/chosen vs rewards/rejected', ['rewards/chosen', 'rewards/rejected'], 'shared', 'value'],
      ['reward/mean and objective/kl', ['reward/mean', 'objective/kl'], 'dual', 'value'],
      ['train/actor_grad_norm and train/critic_grad_norm', ['train/actor_grad_norm', 'train/critic_grad_norm'], 'dual', 'value'],
      ['reward/accuracy vs eval/reward/accuracy', ['reward/accuracy', 'eval/reward/accuracy'], 'shared', 'value'],
      ['train/grad_norm', ['train/grad_norm'], 'shared', 'value'],
    ]);
    expect(finals).toEqual(['objective/kl_coef', 'eval/perplexity']);
    // Every metric lands exactly once.
    expect([...charts.flatMap((c) => c.keys), ...finals].sort()).toEqual([...metrics.keys()].sort());
  });

  it('pairs GRPO reward with its kl, and eval metrics with their unprefixed twin', () => {
    const metrics = new Map<string, MetricPoint[]>([
      ['reward', series(5, (i) => i)],
      ['kl', series(5, (i) => i * 0.1)],
      ['loss', series(5, (i) => 5 - i)],
      ['eval/loss', series(2, (i) => 5 - i)],
      ['train/actor_lr', series(5, (i) => 1e-5 * (i + 1))],
      ['train/critic_lr', series(5, (i) => 2e-5 * (i + 1))],
    ]);
    expect(groupMetrics(metrics).charts.map((c) => c.keys)).toEqual([
      ['reward', 'kl'],
      ['loss', 'eval/loss'],
      ['train/actor_lr', 'train/critic_lr'],
    ]);
  });

  it('draws train and eval chosen/rejected on one chart, eval dashed with the color of its train twin', async () => {
    const metrics = new Map<string, MetricPoint[]>([
      ['reward/chosen', series(6, (i) => i)],
      ['reward/rejected', series(6, (i) => -i)],
      ['eval/reward/chosen', series(2, (i) => i, 3, 3)],
      ['eval/reward/rejected', series(2, (i) => -i, 3, 3)],
    ]);
    const { charts } = groupMetrics(metrics);
    expect(charts.map((c) => [c.title, c.keys])).toEqual([
      ['reward/chosen vs reward/rejected (eval dashed)', ['reward/chosen', 'reward/rejected', 'eval/reward/chosen', 'eval/reward/rejected']],
    ]);
    const svg = await renderGroupChart(charts[0]!, metrics);
    const lines = [...svg.matchAll(/aria-roledescription="line mark" d="[^"]*" stroke="([^"]*)"(?: stroke-width="[^"]*")?(?: stroke-dasharray="([^"]*)")?/g)].map((m) => [m[1], m[2] ?? 'solid']);
    expect(lines).toHaveLength(4);
    expect(new Set(lines.map((l) => l[0])).size).toBe(2); // two colors: chosen, rejected
    expect(lines.filter((l) => l[1] === '5,3')).toHaveLength(2); // the eval pair dashed, the train pair solid (1,0)
  });

  it('names units where the metric name tells them', () => {
    expect(metricUnit('eval/reward/accuracy')).toBe('fraction correct');
    expect(metricUnit('objective/kl')).toBe('KL (nats)');
    expect(metricUnit('train/actor_lr')).toBe('learning rate');
    expect(metricUnit('response/length')).toBe('tokens');
    expect(metricUnit('reward/mean')).toBeNull();
  });
});

describe('chart tick labels', () => {
  it('prints steps as integers with separators, never exponents, and never repeats a label', async () => {
    const metrics = new Map<string, MetricPoint[]>([
      ['train/loss', series(60, (i) => 0.50001 + i * 1e-6, 0, 250)], // steps 0..14,750, values differing in the 6th digit
      ['train/lr', series(60, (i) => 5e-4 * (1 - i / 60), 0, 250)],
      ['reward/mean', series(2, (i) => i * 1000)],
      ['objective/kl', series(2, (i) => i * 0.001)],
    ]);
    const { charts } = groupMetrics(metrics);
    for (const group of charts) {
      const svg = await renderGroupChart(group, metrics);
      const axes = axisLabels(svg);
      expect(axes.length, group.title).toBeGreaterThanOrEqual(2);
      for (const labels of axes) {
        expect(labels.length, group.title).toBeGreaterThan(1);
        expect(labels.filter((l) => /e\+/.test(l)), group.title).toEqual([]);
        expect(new Set(labels).size, `${group.title}: ${labels.join(' ')}`).toBe(labels.length);
      }
    }
    const loss = axisLabels(await renderGroupChart(charts[0]!, metrics));
    expect(loss[0]).toContain('10,000'); // the step axis
    expect(loss[0]!.every((l) => /^[\d,]+$/.test(l))).toBe(true);
    const lr = axisLabels(await renderGroupChart(charts[1]!, metrics));
    expect(lr[1]).toContain('0');
    expect(lr[1]).toContain('1e-4');
  });
});
