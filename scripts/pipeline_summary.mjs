// The pipeline's summary: reads each stage's logs/metrics.jsonl, the label and judge outputs and times.txt from a run
// directory, writes OUT/summary.json (flat keys first, null where a stage did not run) and prints it.
// Usage: node scripts/pipeline_summary.mjs OUT [--data sentiment|hh-rlhf] [--model DIR]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);

/** Rows of a JSON-lines file ([] when it is missing). */
function jsonLines(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Values of `key` in step order (rows without it skipped). */
const series = (rows, key) => rows.filter((r) => typeof r[key] === 'number').map((r) => r[key]);
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

/** "name wall_seconds [cpu_seconds]" lines → { name: { wall, cpu } } (cpu null in older files). */
function stageTimes(file) {
  if (!existsSync(file)) return {};
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
  return Object.fromEntries(lines.map(([k, v, c]) => [k, { wall: Number(v), cpu: c === undefined ? null : Number(c) }]));
}

/** One decoding's numbers from judge.json: the PPO model ("ppo", else the second) against the SFT model (the first). */
function decodingSummary(report, decoding) {
  const results = report.results?.[decoding];
  const effects = report.effects?.[decoding];
  if (!results?.length || !effects?.length) return null;
  const base = results[0];
  const after = results.find((r) => r.name === 'ppo') ?? results[1];
  const effect = effects.find((e) => e.name === after?.name) ?? effects[0];
  const j = effect.judge;
  return {
    before: num(base.judgeMean), after: num(after?.judgeMean), diff: num(j.meanDiff), ci95: j.ci95, d_z: num(j.effectSize),
    wins: j.wins, ties: j.ties, losses: j.losses, rm_before: num(base.rmMean), rm_after: num(after?.rmMean),
    rm_diff: num(effect.rm?.meanDiff), rm_d_z: num(effect.rm?.effectSize),
  };
}

/** summary.json's object for the run directory `out`. */
export function buildSummary(out, { data = 'sentiment', model = 'models/tiny-chat' } = {}) {
  const times = stageTimes(join(out, 'times.txt'));
  const sft = series(jsonLines(join(out, 'sft', 'logs', 'metrics.jsonl')), 'eval/loss');
  const rmRows = jsonLines(join(out, 'rm', 'logs', 'metrics.jsonl'));
  const rmAcc = series(rmRows, 'eval/reward/accuracy');
  const rmMargin = series(rmRows, 'eval/reward/margin');
  const ppoRows = jsonLines(join(out, 'ppo', 'logs', 'metrics.jsonl'));
  const reward = series(ppoRows, 'reward/mean');
  const kl = series(ppoRows, 'objective/kl');
  const prompts = readJson(join(out, 'ppo', 'logs', 'prompts.json'));
  const labelStats = ['train', 'eval'].map((s) => readJson(join(out, 'pairs', `${s}.stats.json`)));
  // ROUNDS=2: round 1's reward model and PPO run, and the pairs ranked from that policy's answers
  const rm1Acc = series(jsonLines(join(out, 'round1', 'rm', 'logs', 'metrics.jsonl')), 'eval/reward/accuracy');
  const ppo1Rows = jsonLines(join(out, 'round1', 'ppo', 'logs', 'metrics.jsonl'));
  const relabel = readJson(join(out, 'pairs', 'round2.stats.json'));
  const round1 = rm1Acc.length || ppo1Rows.length ? {
    rm_eval_accuracy: num(rm1Acc.at(-1)),
    ppo_reward_first: num(series(ppo1Rows, 'reward/mean')[0]), ppo_reward_last: num(series(ppo1Rows, 'reward/mean').at(-1)),
    ppo_kl: num(series(ppo1Rows, 'objective/kl').at(-1)),
    relabeled: relabel,
  } : null;
  const report = readJson(join(out, 'judge.json'));
  const greedy = report ? decodingSummary(report, 'greedy') : null;
  const sampled = report ? decodingSummary(report, 'sampled') : null;
  const stages = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.cpu === null ? { wall_s: v.wall } : { wall_s: v.wall, cpu_s: v.cpu }]));
  const wall = Object.values(times).reduce((a, t) => a + t.wall, 0);
  const cpus = Object.values(times).map((t) => t.cpu);
  const cpu = cpus.length && cpus.every((c) => c !== null) ? Math.round(cpus.reduce((a, c) => a + c, 0) * 10) / 10 : null;
  const judge = report ? { name: report.judge, prompts: report.prompts.length, ...(greedy && { greedy }), ...(sampled && { sampled }) } : null;
  // The over-optimisation gap: what the proxy (the reward model) says PPO gained against what the judge says, both
  // in units of their own spread over the SFT answers (d_z), so the two scales compare.
  const gap = (d) => (d && d.rm_d_z !== null && d.d_z !== null ? d.rm_d_z - d.d_z : null);
  const summary = {
    data,
    model,
    sft_eval_loss_before: num(sft[0]),
    sft_eval_loss_after: num(sft.at(-1)),
    rm_eval_accuracy: num(rmAcc.at(-1)),
    rm_eval_pairs: labelStats[1]?.pairs ?? null,
    rm_train_pairs: labelStats[0]?.pairs ?? null,
    rm_chance: 0.5,
    judge_score_before: greedy?.before ?? null,
    judge_score_after: greedy?.after ?? null,
    ppo_kl: num(kl.at(-1)),
    ppo_reward_first: num(reward[0]),
    ppo_reward_last: num(reward.at(-1)),
    overoptimization_gap_greedy: gap(greedy),
    overoptimization_gap_sampled: gap(sampled),
    wall_s: wall,
    // user + sys seconds of every stage's processes: on a machine shared with other work, the cost wall time hides
    cpu_s: cpu,
    stages,
    judge,
    labeling: labelStats[0] ? { train: labelStats[0], eval: labelStats[1] } : null,
    rounds: round1 ? 2 : 1,
    round1,
    prompts_cut: prompts?.prompts_cut ?? null,
    prompts_total: prompts?.prompts_total ?? null,
    // older nested keys, kept for scripts that read them
    sft: { eval_loss_before: num(sft[0]), eval_loss_after: num(sft.at(-1)), seconds: times.sft?.wall ?? null },
    reward_model: { eval_accuracy: num(rmAcc.at(-1)), eval_margin: num(rmMargin.at(-1)), seconds: times.rm?.wall ?? null },
    ppo: { reward_first: num(reward[0]), reward_last: num(reward.at(-1)), kl_last: num(kl.at(-1)), seconds: times.ppo?.wall ?? null },
    total_seconds: wall,
  };
  return summary;
}

const fmt = (v, d = 3) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : (v >= 0 ? ' ' : '') + Number(v).toFixed(d));
const secs = (s, stage) => (s.stages[stage] ? `(${s.stages[stage].wall_s} s)` : '');

/** The printed summary, one line per number. */
export function summaryLines(s, out) {
  const lines = ['', `=== pipeline summary (${s.data}, ${s.model}) ===`];
  const line = (a, b) => lines.push(`  ${a.padEnd(40)} ${b}`);
  line('SFT eval loss (before → after)', `${fmt(s.sft_eval_loss_before, 4)} → ${fmt(s.sft_eval_loss_after, 4)}   ${secs(s, 'sft')}`);
  if (s.labeling) {
    const t = s.labeling.train, e = s.labeling.eval;
    line('labelled pairs (train / held out)', `${t.pairs} / ${e?.pairs ?? 'n/a'} from ${t.prompts} / ${e?.prompts ?? 'n/a'} prompts × ${t.num_samples} answers; ${(t.near_ties ?? 0) + (e?.near_ties ?? 0)} near-ties (gap < ${t.min_gap}) skipped   ${secs(s, 'label')}`);
  }
  const r1 = s.round1;
  if (r1) {
    line('round 1: reward model held-out accuracy', `${fmt(r1.rm_eval_accuracy)} on ${s.rm_eval_pairs ?? 'the held-out'} pairs (chance ${s.rm_chance})   ${secs(s, 'rm1')}`);
    line('round 1: PPO reward-model score', `${fmt(r1.ppo_reward_first)} → ${fmt(r1.ppo_reward_last)}, KL to SFT ${fmt(r1.ppo_kl)}   ${secs(s, 'ppo1')}`);
    if (r1.relabeled) line('round 2: pairs from the round-1 policy', `${r1.relabeled.pairs} from ${r1.relabeled.prompts} prompts × ${r1.relabeled.num_samples} answers   ${secs(s, 'relabel')}`);
  }
  line(`${r1 ? 'round 2: ' : ''}reward model held-out accuracy`, `${fmt(s.rm_eval_accuracy)} on ${s.rm_eval_pairs ?? 'the held-out'} pairs (chance ${s.rm_chance})   ${secs(s, 'rm')}`);
  line(`${r1 ? 'round 2: ' : ''}PPO reward-model score`, `${fmt(s.ppo_reward_first)} → ${fmt(s.ppo_reward_last)}, KL to SFT ${fmt(s.ppo_kl)}   ${secs(s, 'ppo')}`);
  if (s.prompts_total !== null) line('PPO prompts shortened to fit', `${s.prompts_cut} of ${s.prompts_total}`);
  if (s.judge) {
    line(`judge (${s.judge.name}) on ${s.judge.prompts} held-out prompts`, `SFT → PPO model, paired difference [95% CI], d_z, wins/ties/losses   ${secs(s, 'judge')}`);
    for (const d of ['greedy', 'sampled']) {
      const j = s.judge[d];
      if (!j) continue;
      line(`  ${d}: judge score`, `${fmt(j.before)} → ${fmt(j.after)}   diff ${fmt(j.diff)} [${j.ci95.map((v) => v.toFixed(3)).join(', ')}], d_z ${fmt(j.d_z, 2)}, ${j.wins}/${j.ties}/${j.losses}`);
      line(`  ${d}: reward model on the same`, `${fmt(j.rm_before)} → ${fmt(j.rm_after)}   d_z ${fmt(j.rm_d_z, 2)} (over-optimisation gap: RM d_z − judge d_z = ${fmt(s[`overoptimization_gap_${d}`], 2)})`);
    }
  }
  line('wall time', `${s.wall_s} s${s.cpu_s !== null && s.cpu_s !== undefined ? ` (CPU time, user + sys: ${Math.round(s.cpu_s)} s)` : ''}`);
  lines.push(`  report: ${join(out, 'report.html')}   summary: ${join(out, 'summary.json')}`);
  return lines;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const flag = (name) => { const i = args.indexOf(name); return i >= 0 ? args.splice(i, 2)[1] : undefined; };
  const data = flag('--data');
  const model = flag('--model');
  const out = args[0] ?? 'runs/pipeline';
  const summary = buildSummary(out, { data, model });
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(summaryLines(summary, out).join('\n'));
}
