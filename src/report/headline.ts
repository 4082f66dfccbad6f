/**
 * The report's headline, from the pipeline's summary.json: what ran (route, model, data), the numbers that matter
 * per stage (SFT eval loss before → after; reward-model held-out accuracy against chance; the judge's score before →
 * after PPO with its effect size and the KL to the SFT model), wall time per stage. Every key is optional: what is
 * missing shows as '–'; a key of the wrong type is an error naming the file and the field.
 */
import fs from 'node:fs';
import { escapeHtml, formatDecimals, formatNumber, formatSeconds, formatSigned } from './escape.js';

/** The judge's paired effect for one decoding, as summary.json carries it. */
export interface DecodingEffect {
  decoding: string;
  before?: number;
  after?: number;
  diff?: number;
  ci95?: [number, number];
  dZ?: number;
  wins?: number;
  ties?: number;
  losses?: number;
  rmBefore?: number;
  rmAfter?: number;
  /** The reward model's effect size on the same answers. */
  rmDZ?: number;
  /** Over-optimization gap: the reward model's d_z minus the judge's (the proxy's gain beyond the real one). */
  gap?: number;
}

export interface RunSummary {
  data?: string;
  model?: string;
  sftLossBefore?: number;
  sftLossAfter?: number;
  rmAccuracy?: number;
  rmPairs?: number;
  rmTrainPairs?: number;
  rmChance: number;
  /** ROUNDS=2: round 1's reward model's held-out accuracy, and the pairs ranked from the round-1 policy's answers. */
  rm1Accuracy?: number;
  relabeledPairs?: number;
  judgeBefore?: number;
  judgeAfter?: number;
  ppoKl?: number;
  /** The reward model's mean score of PPO's answers, first and last episode (the proxy PPO optimizes). */
  ppoRewardFirst?: number;
  ppoRewardLast?: number;
  wallS?: number;
  /** Stage name -> wall seconds, in the order the stages ran. */
  stages: { name: string; wallS?: number }[];
  judgeName?: string;
  judgePrompts?: number;
  effects: DecodingEffect[];
  promptsCut?: number;
  promptsTotal?: number;
}

type Json = Record<string, unknown>;

/** Typed access to summary.json's fields: absent or null is `undefined`, a wrong type throws naming file and field. */
class Fields {
  constructor(private readonly file: string) {}

  private at(obj: Json, path: string): unknown {
    let v: unknown = obj;
    for (const part of path.split('.')) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
      v = (v as Json)[part];
    }
    return v;
  }

  private fail(path: string, want: string, got: unknown): never {
    throw new Error(`${this.file}: field '${path}' must be ${want}, got ${JSON.stringify(got)}`);
  }

  number(obj: Json, ...paths: string[]): number | undefined {
    for (const path of paths) {
      const v = this.at(obj, path);
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(path, 'a number (or null)', v);
      return v;
    }
    return undefined;
  }

  string(obj: Json, path: string): string | undefined {
    const v = this.at(obj, path);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') this.fail(path, 'a string (or null)', v);
    return v;
  }

  object(obj: Json, path: string): Json | undefined {
    const v = this.at(obj, path);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(path, 'an object (or null)', v);
    return v as Json;
  }

  interval(obj: Json, path: string): [number, number] | undefined {
    const v = this.at(obj, path);
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) this.fail(path, 'two numbers [low, high]', v);
    return [v[0] as number, v[1] as number];
  }
}

/** The stages summary.json may time, in pipeline order; others it names follow in its own order. */
const STAGE_ORDER = ['sft', 'label', 'rm', 'ppo', 'grpo', 'dpo', 'judge'];

/**
 * Parses summary.json. Reads the flat keys of the current format and, where they are absent, the nested keys
 * older pipelines wrote (`sft.eval_loss_before`, `reward_model.eval_accuracy`, `ppo.kl_last`, `total_seconds`).
 */
export function parseRunSummary(raw: unknown, file: string): RunSummary {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected a JSON object, got ${JSON.stringify(raw)}`);
  const obj = raw as Json;
  const f = new Fields(file);
  const stagesObj = f.object(obj, 'stages') ?? {};
  const names = Object.keys(stagesObj).sort((a, b) => rank(a) - rank(b));
  const stages = names.map((name) => {
    const entry = stagesObj[name];
    if (typeof entry === 'number') return { name, wallS: entry };
    return { name, wallS: f.number(obj, `stages.${name}.wall_s`) };
  });
  if (stages.length === 0) {
    // Older summaries kept each stage's seconds inside its own block.
    for (const [name, block] of [['sft', 'sft'], ['rm', 'reward_model'], ['ppo', 'ppo']] as const) {
      const s = f.number(obj, `${block}.seconds`);
      if (s !== undefined) stages.push({ name, wallS: s });
    }
  }
  const judge = f.object(obj, 'judge');
  const effects: DecodingEffect[] = [];
  if (judge) {
    // Each object-valued key is one decoding's effect (greedy, sampled); other keys (name, prompts, ...) are not.
    const decodings = Object.keys(judge).filter((k) => judge[k] !== null && typeof judge[k] === 'object' && !Array.isArray(judge[k]));
    for (const decoding of decodings) {
      const p = `judge.${decoding}`;
      effects.push({
        decoding,
        before: f.number(obj, `${p}.before`),
        after: f.number(obj, `${p}.after`),
        diff: f.number(obj, `${p}.diff`),
        ci95: f.interval(obj, `${p}.ci95`),
        dZ: f.number(obj, `${p}.d_z`),
        wins: f.number(obj, `${p}.wins`),
        ties: f.number(obj, `${p}.ties`),
        losses: f.number(obj, `${p}.losses`),
        rmBefore: f.number(obj, `${p}.rm_before`),
        rmAfter: f.number(obj, `${p}.rm_after`),
        rmDZ: f.number(obj, `${p}.rm_d_z`),
        gap: f.number(obj, `overoptimization_gap_${decoding}`),
      });
    }
    effects.sort((a, b) => (a.decoding === 'greedy' ? -1 : b.decoding === 'greedy' ? 1 : a.decoding.localeCompare(b.decoding)));
  }
  const greedy = effects.find((e) => e.decoding === 'greedy');
  return {
    data: f.string(obj, 'data'),
    model: f.string(obj, 'model'),
    sftLossBefore: f.number(obj, 'sft_eval_loss_before', 'sft.eval_loss_before'),
    sftLossAfter: f.number(obj, 'sft_eval_loss_after', 'sft.eval_loss_after'),
    rmAccuracy: f.number(obj, 'rm_eval_accuracy', 'reward_model.eval_accuracy'),
    rmPairs: f.number(obj, 'rm_eval_pairs'),
    rmTrainPairs: f.number(obj, 'rm_train_pairs'),
    rmChance: f.number(obj, 'rm_chance') ?? 0.5,
    rm1Accuracy: f.number(obj, 'round1.rm_eval_accuracy'),
    relabeledPairs: f.number(obj, 'round1.relabeled.pairs'),
    judgeBefore: f.number(obj, 'judge_score_before') ?? greedy?.before,
    judgeAfter: f.number(obj, 'judge_score_after') ?? greedy?.after,
    ppoKl: f.number(obj, 'ppo_kl', 'ppo.kl_last'),
    ppoRewardFirst: f.number(obj, 'ppo_reward_first', 'ppo.reward_first'),
    ppoRewardLast: f.number(obj, 'ppo_reward_last', 'ppo.reward_last'),
    wallS: f.number(obj, 'wall_s', 'total_seconds'),
    stages,
    judgeName: judge ? f.string(obj, 'judge.name') : undefined,
    judgePrompts: judge ? f.number(obj, 'judge.prompts') : undefined,
    effects,
    promptsCut: f.number(obj, 'prompts_cut'),
    promptsTotal: f.number(obj, 'prompts_total'),
  };
}

function rank(stage: string): number {
  const i = STAGE_ORDER.indexOf(stage);
  return i < 0 ? STAGE_ORDER.length : i;
}

export function readRunSummary(file: string): RunSummary {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`report: --summary ${file}: ${(e as Error).message}`);
  }
  return parseRunSummary(raw, file);
}

const STAGE_TITLES: Record<string, string> = {
  sft: 'SFT', label: 'labelling pairs', rm1: 'reward model, round 1', ppo1: 'PPO, round 1', relabel: 'labelling the round-1 policy', rm: 'reward model', ppo: 'PPO', grpo: 'GRPO', dpo: 'DPO', judge: 'judging answers',
};

/** `+1.1 [0.8, 1.4], d_z 0.9, 40 wins / 10 ties / 14 losses`: a paired effect in one line. */
export function effectLine(e: DecodingEffect): string {
  const parts: string[] = [];
  if (e.diff !== undefined) parts.push(`${formatSigned(e.diff)}${e.ci95 ? ` [95% CI ${formatSigned(e.ci95[0])}, ${formatSigned(e.ci95[1])}]` : ''}`);
  if (e.dZ !== undefined) parts.push(`effect size d<sub>z</sub> ${e.dZ.toFixed(2).replace('-', '−')}`);
  if (e.wins !== undefined && e.ties !== undefined && e.losses !== undefined) parts.push(`${e.wins} wins / ${e.ties} ties / ${e.losses} losses`);
  return parts.join(', ');
}

/** Whether a paired effect is clearly positive (its interval above zero), clearly negative, or neither. */
export function effectVerdict(e: Pick<DecodingEffect, 'ci95' | 'diff'>): 'up' | 'down' | 'unclear' {
  if (!e.ci95) return 'unclear';
  if (e.ci95[0] > 0) return 'up';
  if (e.ci95[1] < 0) return 'down';
  return 'unclear';
}

function card(title: string, big: string, lines: string[], verdict: 'good' | 'bad' | 'neutral', wall: number | undefined): string {
  return [
    `<div class="card ${verdict}">`,
    `<h3>${escapeHtml(title)}</h3>`,
    `<p class="big">${big}</p>`,
    ...lines.map((l) => `<p>${l}</p>`),
    wall !== undefined ? `<p class="time">${escapeHtml(formatSeconds(wall))}</p>` : '',
    '</div>',
  ].join('');
}

/** The headline section (already escaped HTML). */
export function renderHeadline(s: RunSummary): string {
  const wall = (name: string) => s.stages.find((st) => st.name === name)?.wallS;
  const what: string[] = [];
  if (s.data !== undefined) what.push(`data <b>${escapeHtml(s.data)}</b>`);
  if (s.model !== undefined) what.push(`starting model <code>${escapeHtml(s.model)}</code>`);
  if (s.stages.length > 0) what.push(`stages ${s.stages.map((st) => escapeHtml(st.name)).join(' → ')}`);
  if (s.promptsCut !== undefined) {
    what.push(`${formatNumber(s.promptsCut)}${s.promptsTotal !== undefined ? ` of ${formatNumber(s.promptsTotal)}` : ''} PPO prompts shortened to fit the input length`);
  }

  const cards: string[] = [];
  {
    const { sftLossBefore: a, sftLossAfter: b } = s;
    const verdict = a !== undefined && b !== undefined ? (b < a ? 'good' : 'bad') : 'neutral';
    const delta = a !== undefined && b !== undefined ? ` (${formatSigned(b - a)})` : '';
    cards.push(card('SFT', `${formatNumber(a)} → ${formatNumber(b)}`, [`eval loss before → after training${delta}; lower is better`], verdict, wall('sft')));
  }
  {
    const acc = s.rmAccuracy;
    const verdict = acc !== undefined ? (acc > s.rmChance ? 'good' : 'bad') : 'neutral';
    const pairs = s.rmPairs !== undefined ? ` on ${formatNumber(s.rmPairs)} pairs` : '';
    const lines = [`held-out pairwise accuracy${pairs}; chance is ${formatNumber(s.rmChance)}`];
    if (s.rmTrainPairs !== undefined) lines.push(`trained on ${formatNumber(s.rmTrainPairs)} labelled pairs`);
    if (s.rm1Accuracy !== undefined) {
      const more = s.relabeledPairs !== undefined ? `, then on ${formatNumber(s.relabeledPairs)} pairs ranked from the round-1 PPO policy's answers` : '';
      lines.push(`round 1: ${formatDecimals(s.rm1Accuracy)}${more}`);
    }
    cards.push(card('reward model', formatDecimals(acc), lines, verdict, wall('rm')));
  }
  {
    const judgeName = s.judgeName !== undefined ? `the ${escapeHtml(s.judgeName)} judge's` : 'the judge';
    const prompts = s.judgePrompts !== undefined ? ` on ${formatNumber(s.judgePrompts)} held-out prompts` : ' on held-out prompts';
    const lines = [`${judgeName} mean score${prompts}, SFT model → PPO model (greedy)`];
    for (const e of s.effects) {
      const scores = e.decoding === 'greedy' ? '' : `${formatDecimals(e.before)} → ${formatDecimals(e.after)}: `;
      let rm = e.rmBefore !== undefined || e.rmAfter !== undefined ? `; reward model ${formatDecimals(e.rmBefore)} → ${formatDecimals(e.rmAfter)}` : '';
      if (e.rmDZ !== undefined) rm += ` (d<sub>z</sub> ${e.rmDZ.toFixed(2).replace('-', '−')})`;
      if (e.gap !== undefined) rm += `; over-optimization gap (RM d<sub>z</sub> − judge d<sub>z</sub>) ${formatSigned(e.gap, 2)}`;
      lines.push(`<b>${escapeHtml(e.decoding)}</b>: ${scores}${effectLine(e)}${rm}`);
    }
    const proxy = `${formatDecimals(s.ppoRewardFirst)} → ${formatDecimals(s.ppoRewardLast)}`;
    const judged = s.judgeBefore !== undefined || s.judgeAfter !== undefined || s.effects.length > 0;
    const hasProxy = s.ppoRewardFirst !== undefined || s.ppoRewardLast !== undefined;
    lines.push(`KL of the PPO model to the SFT model: ${formatDecimals(s.ppoKl)} nats`);
    const greedy = s.effects.find((e) => e.decoding === 'greedy');
    const verdict = greedy ? { up: 'good', down: 'bad', unclear: 'neutral' }[effectVerdict(greedy)] : 'neutral';
    if (!judged && hasProxy) {
      // No judge ran: the reward model's own score is all there is, and it is the proxy PPO optimized.
      const proxyLines = ["the reward model's mean score of PPO's answers, first → last episode (no judge ran)", lines.at(-1)!];
      cards.push(card('PPO', proxy, proxyLines, 'neutral', wall('ppo')));
    } else {
      if (hasProxy) lines.push(`reward-model score during PPO (the proxy it optimizes): ${proxy}`);
      cards.push(card('PPO', `${formatDecimals(s.judgeBefore)} → ${formatDecimals(s.judgeAfter)}`, lines, verdict as 'good' | 'bad' | 'neutral', wall('ppo')));
    }
  }

  const timeRows = s.stages.map((st) => `<tr><th scope="row">${escapeHtml(STAGE_TITLES[st.name] ?? st.name)}</th><td>${escapeHtml(formatSeconds(st.wallS))}</td></tr>`);
  timeRows.push(`<tr class="total"><th scope="row">total</th><td>${escapeHtml(formatSeconds(s.wallS ?? (s.stages.length > 0 ? s.stages.reduce((t, st) => t + (st.wallS ?? 0), 0) : undefined)))}</td></tr>`);
  return [
    '<section class="headline" id="headline">',
    '<h2>Result</h2>',
    what.length > 0 ? `<p class="what">${what.join(' · ')}</p>` : '',
    `<div class="cards">${cards.join('\n')}</div>`,
    `<table class="times"><thead><tr><th>stage</th><th>wall time</th></tr></thead><tbody>${timeRows.join('')}</tbody></table>`,
    '</section>',
  ].join('\n');
}
