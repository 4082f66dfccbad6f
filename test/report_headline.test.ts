import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildReport, parseRunSummary, parseSideBySide, renderHeadline, renderSideBySide } from '../src/report/index.js';

const FIXTURES = path.resolve('test/fixtures/report');
const readJson = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));
const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'report-headline-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('headline from summary.json', () => {
  it('scores keep 3 decimals (−1.995 is not rounded to −2)', () => {
    const s = parseRunSummary(readJson('summary.json'), 'summary.json');
    const t = text(renderHeadline({ ...s, judgeBefore: 0.133, judgeAfter: -1.995, ppoKl: 1.4419 }));
    expect(t).toContain('0.133 → -1.995');
    expect(t).toContain('to the SFT model: 1.442 nats');
  });

  it('shows what ran, the three numbers per stage and wall times', () => {
    const s = parseRunSummary(readJson('summary.json'), 'summary.json');
    expect(s).toMatchObject({ data: 'sentiment', model: 'models/tiny-chat', sftLossBefore: 4.86, sftLossAfter: 3.9, rmAccuracy: 0.84, rmPairs: 300, ppoKl: 0.8, wallS: 540 });
    expect(s.stages.map((st) => st.name)).toEqual(['sft', 'label', 'rm', 'ppo', 'judge']);
    expect(s.effects.map((e) => e.decoding)).toEqual(['greedy', 'sampled']);
    const t = text(renderHeadline(s));
    expect(t).toContain('data sentiment');
    expect(t).toContain('starting model models/tiny-chat');
    expect(t).toContain('12 of 256 PPO prompts shortened');
    expect(t).toContain('4.86 → 3.9');
    expect(t).toContain('eval loss before → after training (−0.96)');
    expect(t).toContain('held-out pairwise accuracy on 300 pairs; chance is 0.5');
    expect(t).toContain('-0.667 → 4.833');
    expect(t).toContain('greedy: +5.5 [95% CI +3.84, +7.16], effect size dz 2.65, 6 wins / 0 ties / 0 losses; reward model -0.215 → 1.499 (dz 1.90); over-optimization gap (RM dz − judge dz) −0.75');
    expect(t).toContain('trained on 2400 labelled pairs');
    expect(t).toContain('sampled: 0.333 → 2.833: +2.5 [95% CI +0.556, +4.44]');
    expect(t).toContain('KL of the PPO model to the SFT model: 0.8 nats');
    expect(t).toContain('reward model1 min 30 s');
    expect(t).toContain('total9 min');
    // A loss that fell, an accuracy above chance and a judge interval above zero are marked good.
    expect(renderHeadline(s).match(/class="card good"/g)).toHaveLength(3);
  });

  it('ROUNDS=2: the reward model card names round 1\'s accuracy and the relabelled pairs; the stages have titles', () => {
    const raw = readJson('summary.json') as Record<string, unknown>;
    const two = { ...raw, round1: { rm_eval_accuracy: 0.831, relabeled: { pairs: 2710, prompts: 256 } }, stages: { sft: { wall_s: 8 }, rm1: { wall_s: 90 }, ppo1: { wall_s: 60 }, relabel: { wall_s: 20 }, rm: { wall_s: 30 }, ppo: { wall_s: 60 } } };
    const s = parseRunSummary(two, 'summary.json');
    expect([s.rm1Accuracy, s.relabeledPairs]).toEqual([0.831, 2710]);
    const t = text(renderHeadline(s));
    expect(t).toContain("round 1: 0.831, then on 2710 pairs ranked from the round-1 PPO policy's answers");
    expect(t).toContain('reward model, round 11 min 30 s');
    expect(t).toContain('labelling the round-1 policy20 s');
    expect(text(renderHeadline(parseRunSummary(raw, 'summary.json')))).not.toContain('round 1');
  });

  it('degrades gracefully: missing keys show as –, older nested keys are read', () => {
    const empty = parseRunSummary({}, 'summary.json');
    const t = text(renderHeadline(empty));
    expect(t).toContain('– → –');
    expect(t).toContain('chance is 0.5');
    expect(t).not.toContain('undefined');
    expect(t).not.toContain('NaN');
    const old = parseRunSummary(
      { sft: { eval_loss_before: 4.8, eval_loss_after: 4.7, seconds: 12 }, reward_model: { eval_accuracy: 0.45, seconds: 5 }, ppo: { kl_last: 0.05, seconds: 30 }, total_seconds: 47 },
      'summary.json',
    );
    expect(old).toMatchObject({ sftLossBefore: 4.8, sftLossAfter: 4.7, rmAccuracy: 0.45, ppoKl: 0.05, wallS: 47 });
    expect(old.stages).toEqual([{ name: 'sft', wallS: 12 }, { name: 'rm', wallS: 5 }, { name: 'ppo', wallS: 30 }]);
    // Accuracy below chance is marked bad, not good.
    expect(renderHeadline(old)).toMatch(/<div class="card bad"><h3>reward model/);
    // Without a judge the PPO card shows the reward model's score, saying it is the proxy.
    const proxy = text(renderHeadline(parseRunSummary({ ppo: { reward_first: -0.026, reward_last: 0.027, kl_last: 0.05 } }, 's.json')));
    expect(proxy).toContain("PPO-0.026 → 0.027the reward model's mean score of PPO's answers, first → last episode (no judge ran)");
  });

  it('names the file and field of a value of the wrong type', () => {
    expect(() => parseRunSummary({ rm_eval_accuracy: '0.8' }, 'runs/x/summary.json')).toThrow(`runs/x/summary.json: field 'rm_eval_accuracy' must be a number (or null), got "0.8"`);
    expect(() => parseRunSummary({ judge: { greedy: { ci95: [1] } } }, 's.json')).toThrow(`s.json: field 'judge.greedy.ci95' must be two numbers [low, high]`);
    expect(() => parseRunSummary([], 's.json')).toThrow('s.json: expected a JSON object');
    // Keys it does not know are ignored, in the judge block too.
    expect(parseRunSummary({ judge: { name: 'sentiment', decodings: ['greedy'], greedy: { diff: 1 } }, extra: [1] }, 's.json').effects).toEqual([{ decoding: 'greedy', diff: 1 }]);
  });
});

describe('answers side by side from judge.json', () => {
  it('shows each prompt with both models’ answers and scores, and the effect recomputed from them', () => {
    const s = parseSideBySide(readJson('judge.json'), 'judge.json');
    expect(s.tables.map((t) => [t.decoding, t.models.map((m) => m.name)])).toEqual([
      ['greedy', ['sft', 'ppo']],
      ['sampled', ['sft', 'ppo']],
    ]);
    expect(s.tables[0]!.effects[0]!.judge).toMatchObject({ n: 6, meanDiff: 5.5, wins: 6, ties: 0, losses: 0 });
    const html = renderSideBySide(s);
    expect(html.match(/<table class="answers"/g)).toHaveLength(2);
    expect(html.match(/<tbody>[\s\S]*?<\/tbody>/)![0].match(/<tr>/g)).toHaveLength(6);
    expect(text(html)).toContain('ppo vs sft: sentiment score -0.667 → 4.833, difference +5.5 [95% CI +3.84, +7.16], effect size dz 2.65, 6 wins');
    expect(text(html)).toContain('It was fine.0');
    expect(html).toMatch(/<td class="text">It was wonderful, thank you!<\/td><td class="num win">4<\/td>/);
  });

  it('escapes prompts and answers: model output cannot inject markup', () => {
    const html = renderSideBySide(parseSideBySide(readJson('judge.json'), 'judge.json'));
    expect(html).not.toMatch(/<script|<img|<\/textarea|<\/td><\/tr><script|<b>bold/i);
    expect(html).toContain('&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(2)&gt;');
    expect(html).toContain('a nice &amp; useful tag. &lt;/textarea&gt;&lt;script&gt;alert(3)&lt;/script&gt;');
    // Names too.
    const evil = { prompts: ['p'], results: { greedy: [{ name: '<i>sft</i>', answers: ['"a"'], judge: [0] }, { name: 'ppo"><x', answers: ['b'], judge: [1] }] } };
    const h = renderSideBySide(parseSideBySide(evil, 'j.json'));
    expect(h).not.toMatch(/<i>|"><x/);
    expect(h).toContain('&lt;i&gt;sft&lt;/i&gt;');
  });

  it('names the file and field when a model did not answer every prompt', () => {
    const bad = { prompts: ['a', 'b'], results: { greedy: [{ name: 'sft', answers: ['x'], judge: [0, 1] }] } };
    expect(() => parseSideBySide(bad, 'runs/judge.json')).toThrow(`runs/judge.json: field 'results.greedy[0].answers' must be 2 strings (one per prompt), got ["x"]`);
    expect(() => parseSideBySide({ prompts: ['a'], results: { greedy: [{ name: 'sft', answers: ['x'], judge: ['high'] }] } }, 'j.json')).toThrow(`field 'results.greedy[0].judge' must be 1 numbers`);
    expect(() => parseSideBySide({ prompts: 'a' }, 'j.json')).toThrow(`j.json: field 'prompts' must be a list of strings`);
  });
});

describe('buildReport with --summary and --judge', () => {
  it('puts the headline and the side-by-side table above the stages, and notes a missing judge.json', async () => {
    const logs = ['sft', 'rm', 'ppo'].map((s) => path.join(FIXTURES, s, 'logs'));
    const out = path.join(tmp, 'report.html');
    const result = await buildReport(logs, out, { summaryFile: path.join(FIXTURES, 'summary.json'), judgeFile: path.join(FIXTURES, 'judge.json') });
    expect(result).toMatchObject({ headline: true, sideBySide: true, notes: [] });
    const html = fs.readFileSync(out, 'utf8');
    const at = (s: string) => html.indexOf(s);
    expect(at('id="headline"')).toBeGreaterThan(0);
    expect(at('id="headline"')).toBeLessThan(at('id="side-by-side"'));
    expect(at('id="side-by-side"')).toBeLessThan(at('id="stage-0"'));
    expect(html).not.toMatch(/<script/i);

    const missing = path.join(tmp, 'nope', 'judge.json');
    const r2 = await buildReport(logs.slice(0, 1), out, { summaryFile: path.join(FIXTURES, 'summary.json'), judgeFile: missing });
    expect(r2).toMatchObject({ headline: true, sideBySide: false, notes: [`--judge ${missing} does not exist: its section is left out`] });
    expect(fs.readFileSync(out, 'utf8')).toContain('does not exist: its section is left out');
  });
});
