/** scripts/pipeline_summary.mjs: summary.json from a small fake run directory carries the keys scripts and the report read. */
import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pairedEffect } from '../src/report/effect_size.js';

const script = join(import.meta.dirname, '..', 'scripts', 'pipeline_summary.mjs');

function fakeRun(withJudge: boolean): string {
  const out = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const metrics = (stage: string, rows: Record<string, number>[]) => {
    mkdirSync(join(out, stage, 'logs'), { recursive: true });
    writeFileSync(join(out, stage, 'logs', 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  };
  metrics('sft', [{ step: 0, 'eval/loss': 4.9 }, { step: 5, 'train/loss': 4.5 }, { step: 10, 'eval/loss': 4.6 }]);
  metrics('rm', [{ step: 10, 'eval/reward/accuracy': 0.7, 'eval/reward/margin': 0.5 }, { step: 20, 'eval/reward/accuracy': 0.85, 'eval/reward/margin': 1.5 }]);
  metrics('ppo', [{ step: 1, 'reward/mean': -1, 'objective/kl': 0 }, { step: 2, 'reward/mean': 0.5, 'objective/kl': 0.8 }]);
  writeFileSync(join(out, 'ppo', 'logs', 'prompts.json'), JSON.stringify({ prompts_total: 256, prompts_cut: 12, prompts_cut_template: 0, max_input_len: 96 }));
  writeFileSync(join(out, 'times.txt'), withJudge ? 'sft 10 18.5\nlabel 20 39.5\nrm 30 50\nppo 40 70.2\njudge 5 9.1\n' : 'sft 10\nlabel 20\nrm 30\nppo 40\n');
  if (withJudge) {
    mkdirSync(join(out, 'pairs'));
    for (const [s, pairs] of [['train', 300], ['eval', 80]] as const) {
      writeFileSync(join(out, 'pairs', `${s}.stats.json`), JSON.stringify({ prompts: 100, num_samples: 6, pairs, ties: 20, min_gap: 2 }));
    }
    const sft = [0, 1, 0, 2], ppo = [2, 3, 0, 4], rmSft = [0, 0, 1, 0], rmPpo = [3, 2, 4, 3];
    const results = (judge: number[], rm: number[], name: string) => ({ name, dir: name, answers: judge.map(String), judge, judgeMean: judge.reduce((a, b) => a + b) / 4, judgeStd: 1, rm, rmMean: rm.reduce((a, b) => a + b) / 4 });
    const report = {
      judge: 'sentiment', prompts: ['a', 'b', 'c', 'd'], template: 'alpaca',
      results: { greedy: [results(sft, rmSft, 'sft'), results(ppo, rmPpo, 'ppo')] },
      effects: { greedy: [{ name: 'ppo', judge: pairedEffect(sft, ppo), rm: pairedEffect(rmSft, rmPpo) }] },
    };
    writeFileSync(join(out, 'judge.json'), JSON.stringify(report));
  }
  return out;
}

describe('pipeline_summary.mjs', () => {
  it("writes the contract's flat keys, the stages' wall times and the judge's paired effect", () => {
    const out = fakeRun(true);
    const printed = execFileSync('node', [script, out, '--data', 'sentiment', '--model', 'models/tiny-chat'], { encoding: 'utf8' });
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({
      data: 'sentiment', model: 'models/tiny-chat', sft_eval_loss_before: 4.9, sft_eval_loss_after: 4.6, rm_eval_accuracy: 0.85,
      rm_eval_pairs: 80, rm_chance: 0.5, judge_score_before: 0.75, judge_score_after: 2.25, ppo_kl: 0.8, wall_s: 105,
      stages: { sft: { wall_s: 10, cpu_s: 18.5 }, label: { wall_s: 20, cpu_s: 39.5 }, rm: { wall_s: 30, cpu_s: 50 }, ppo: { wall_s: 40, cpu_s: 70.2 }, judge: { wall_s: 5, cpu_s: 9.1 } },
      prompts_cut: 12, prompts_total: 256, cpu_s: 187.3,
    });
    const g = s.judge.greedy;
    expect(s.judge).toMatchObject({ name: 'sentiment', prompts: 4 });
    expect(g).toMatchObject({ before: 0.75, after: 2.25, diff: 1.5, wins: 3, ties: 1, losses: 0, rm_before: 0.25, rm_after: 3 });
    expect(g.ci95[0]).toBeLessThan(1.5);
    expect(g.ci95[1]).toBeGreaterThan(1.5);
    expect(g.d_z).toBeCloseTo(pairedEffect([0, 1, 0, 2], [2, 3, 0, 4]).effectSize, 12);
    expect(s.judge.sampled).toBeUndefined();
    expect(s.overoptimization_gap_greedy).toBeCloseTo(g.rm_d_z - g.d_z, 12);
    expect(printed).toContain('reward model held-out accuracy');
    expect(printed).toContain('0.850 on 80');
    expect(printed).toContain('105 s (CPU time, user + sys: 187 s)');
  });

  it('ROUNDS=2: round 1\'s reward model and PPO run, the relabelled pairs, and the round-2 numbers as the main keys', () => {
    const out = fakeRun(true);
    const metrics = (stage: string, rows: Record<string, number>[]) => {
      mkdirSync(join(out, stage, 'logs'), { recursive: true });
      writeFileSync(join(out, stage, 'logs', 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    };
    metrics(join('round1', 'rm'), [{ step: 20, 'eval/reward/accuracy': 0.8 }]);
    metrics(join('round1', 'ppo'), [{ step: 1, 'reward/mean': 2, 'objective/kl': 0 }, { step: 2, 'reward/mean': 4, 'objective/kl': 1.3 }]);
    writeFileSync(join(out, 'pairs', 'round2.stats.json'), JSON.stringify({ prompts: 32, num_samples: 8, pairs: 250, ties: 3, min_gap: 2 }));
    writeFileSync(join(out, 'times.txt'), 'sft 10 18\nlabel 20 40\nrm1 30 50\nppo1 40 70\nrelabel 5 8\nrm 6 9\nppo 40 70\njudge 5 9\n');
    const printed = execFileSync('node', [script, out], { encoding: 'utf8' });
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s.rounds).toBe(2);
    expect(s.round1).toMatchObject({ rm_eval_accuracy: 0.8, ppo_reward_first: 2, ppo_reward_last: 4, ppo_kl: 1.3, relabeled: { pairs: 250, prompts: 32 } });
    expect(s).toMatchObject({ rm_eval_accuracy: 0.85, ppo_kl: 0.8, wall_s: 156 });
    expect(printed).toContain('round 1: reward model held-out accuracy');
    expect(printed).toContain('round 2: pairs from the round-1 policy   250 from 32 prompts × 8 answers');
    expect(printed).toContain('round 2: reward model held-out accuracy');
  });

  it('null for what did not run (the hh-rlhf route has no labelling or judge)', () => {
    const out = fakeRun(false);
    execFileSync('node', [script, out, '--data', 'hh-rlhf'], { encoding: 'utf8' });
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s.data).toBe('hh-rlhf');
    expect(s.judge).toBeNull();
    expect(s.judge_score_before).toBeNull();
    expect(s.judge_score_after).toBeNull();
    expect(s.rm_eval_pairs).toBeNull();
    expect(s.rm_eval_accuracy).toBe(0.85);
    expect(s.stages.sft).toEqual({ wall_s: 10 }); // an older times.txt, without CPU seconds
    expect(s.cpu_s).toBeNull();
    expect(s.wall_s).toBe(100);
    expect([s.rounds, s.round1]).toEqual([1, null]);
    for (const k of ['sft_eval_loss_before', 'sft_eval_loss_after', 'rm_eval_accuracy', 'judge_score_before', 'judge_score_after', 'ppo_kl', 'wall_s']) {
      expect(s).toHaveProperty(k);
    }
  });
});
