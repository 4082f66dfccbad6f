// Prints the pipeline's summary from each stage's metrics.jsonl: SFT eval loss before/after, reward-model eval
// accuracy, PPO mean reward first vs last episode and KL, wall time per stage. Usage: node pipeline_summary.mjs OUT
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2] ?? 'runs/pipeline';

function rows(stage) {
  const file = join(out, stage, 'logs', 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Values of `key` in step order (rows without it skipped). */
function series(rs, key) {
  return rs.filter((r) => typeof r[key] === 'number').map((r) => r[key]);
}

const fmt = (v, d = 4) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : Number(v).toFixed(d));
const times = existsSync(join(out, 'times.txt'))
  ? Object.fromEntries(readFileSync(join(out, 'times.txt'), 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]))
  : {};

const sft = series(rows('sft'), 'eval/loss');
const rm = rows('rm');
const rmAcc = series(rm, 'eval/reward/accuracy');
const rmMargin = series(rm, 'eval/reward/margin');
const ppo = rows('ppo');
const reward = series(ppo, 'reward/mean');
const kl = series(ppo, 'objective/kl');
const summary = {
  sft: { eval_loss_before: sft[0], eval_loss_after: sft.at(-1), seconds: times.sft },
  reward_model: { eval_accuracy: rmAcc.at(-1), eval_margin: rmMargin.at(-1), seconds: times.rm },
  ppo: { reward_first: reward[0], reward_last: reward.at(-1), kl_last: kl.at(-1), seconds: times.ppo },
  total_seconds: Object.values(times).reduce((a, b) => a + b, 0),
};
writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
const line = (a, b) => console.log(`  ${a.padEnd(34)} ${b}`);
console.log('\n=== pipeline summary ===');
line('SFT eval loss (before → after)', `${fmt(summary.sft.eval_loss_before)} → ${fmt(summary.sft.eval_loss_after)}   (${times.sft ?? '?'} s)`);
line('reward model eval accuracy / margin', `${fmt(summary.reward_model.eval_accuracy, 3)} / ${fmt(summary.reward_model.eval_margin, 3)}   (${times.rm ?? '?'} s)`);
line('PPO mean reward (first → last)', `${fmt(summary.ppo.reward_first)} → ${fmt(summary.ppo.reward_last)}   (${times.ppo ?? '?'} s)`);
line('PPO KL to the initial model (last)', fmt(summary.ppo.kl_last));
line('wall time', `${summary.total_seconds} s`);
console.log(`  report: ${join(out, 'report.html')}   summary: ${join(out, 'summary.json')}`);
