/**
 * The side-by-side table from judge.json (what `judge --out` writes): the same held-out prompts answered by the
 * first model (SFT) and the later ones (PPO), greedy and sampled, with the judge's and the reward model's score of
 * every answer, and the paired effect above each table. Answers are model output: everything is escaped.
 */
import fs from 'node:fs';
import { pairedEffect, type PairedEffect } from './effect_size.js';
import { escapeHtml, formatDecimals } from './escape.js';
import { effectLine, effectVerdict } from './headline.js';

export interface ModelColumn {
  name: string;
  answers: string[];
  judge: number[];
  rm?: number[];
}

export interface DecodingTable {
  decoding: string;
  models: ModelColumn[];
  /** Each later model against the first. */
  effects: { name: string; judge: PairedEffect; rm?: PairedEffect }[];
}

export interface SideBySide {
  judge?: string;
  prompts: string[];
  tables: DecodingTable[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parses judge.json, checking that every model answered every prompt; errors name the file and the field. */
export function parseSideBySide(raw: unknown, file: string): SideBySide {
  const fail = (field: string, want: string, got: unknown): never => {
    const shown = JSON.stringify(got);
    throw new Error(`${file}: field '${field}' must be ${want}, got ${shown === undefined ? 'nothing' : shown.length > 80 ? shown.slice(0, 80) + '…' : shown}`);
  };
  if (!isObject(raw)) fail('(top level)', 'an object', raw);
  const obj = raw as Json;
  const prompts = obj.prompts;
  if (!Array.isArray(prompts) || !prompts.every((p) => typeof p === 'string')) fail('prompts', 'a list of strings', prompts);
  const n = (prompts as string[]).length;
  const results = obj.results;
  if (!isObject(results)) fail('results', 'an object (decoding -> models)', results);
  const strings = (v: unknown, field: string): string[] => (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'string') ? v : fail(field, `${n} strings (one per prompt)`, v));
  const numbers = (v: unknown, field: string): number[] =>
    Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number') ? v : fail(field, `${n} numbers (one per prompt)`, v);

  const order = (d: string) => (d === 'greedy' ? 0 : d === 'sampled' ? 1 : 2);
  const tables: DecodingTable[] = [];
  for (const decoding of Object.keys(results as Json).sort((a, b) => order(a) - order(b) || a.localeCompare(b))) {
    const list = (results as Json)[decoding];
    if (!Array.isArray(list) || list.length === 0) fail(`results.${decoding}`, 'a non-empty list of models', list);
    const models = (list as unknown[]).map((m, i): ModelColumn => {
      const at = `results.${decoding}[${i}]`;
      if (!isObject(m)) fail(at, 'an object', m);
      const model = m as Json;
      if (typeof model.name !== 'string') fail(`${at}.name`, 'a string', model.name);
      return {
        name: model.name as string,
        answers: strings(model.answers, `${at}.answers`),
        judge: numbers(model.judge, `${at}.judge`),
        ...(model.rm !== undefined && model.rm !== null ? { rm: numbers(model.rm, `${at}.rm`) } : {}),
      };
    });
    // The effects are recomputed from the scores: the same formula as the judge's, and never out of step with the table.
    const base = models[0]!;
    const effects =
      n === 0
        ? []
        : models.slice(1).map((m) => ({ name: m.name, judge: pairedEffect(base.judge, m.judge), ...(base.rm && m.rm ? { rm: pairedEffect(base.rm, m.rm) } : {}) }));
    tables.push({ decoding, models, effects });
  }
  return { ...(typeof obj.judge === 'string' ? { judge: obj.judge } : {}), prompts: prompts as string[], tables };
}

export function readSideBySide(file: string): SideBySide {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`report: --judge ${file}: ${(e as Error).message}`);
  }
  return parseSideBySide(raw, file);
}

const score = (v: number | undefined) => formatDecimals(v);

function effectSummary(table: DecodingTable, judge: string | undefined): string {
  const base = table.models[0]!;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return table.effects
    .map((e) => {
      const j = e.judge;
      const line = effectLine({ decoding: table.decoding, diff: j.meanDiff, ci95: j.ci95, dZ: j.effectSize, wins: j.wins, ties: j.ties, losses: j.losses });
      const rm = e.rm ? `; reward model ${score(e.rm.meanA)} → ${score(e.rm.meanB)}` : '';
      const verdict = effectVerdict({ ci95: j.ci95 });
      const model = table.models.find((m) => m.name === e.name)!;
      return (
        `<p class="effect ${verdict}"><b>${escapeHtml(e.name)}</b> vs <b>${escapeHtml(base.name)}</b>: ${escapeHtml(judge ?? 'judge')} score ` +
        `${score(mean(base.judge))} → ${score(mean(model.judge))}, difference ${line}${rm}</p>`
      );
    })
    .join('\n');
}

/** The side-by-side section (already escaped HTML). */
export function renderSideBySide(s: SideBySide): string {
  const parts = ['<section class="side-by-side" id="side-by-side">', '<h2>Answers side by side</h2>'];
  parts.push(
    `<p class="note">The same ${s.prompts.length} held-out prompts (never trained on) answered by each model; ` +
      `scores from the ${escapeHtml(s.judge ?? 'automatic')} judge${s.tables.some((t) => t.models.some((m) => m.rm)) ? ' and the reward model (RM)' : ''}. ` +
      'A green score beat the first model on that prompt, a red one lost.</p>',
  );
  for (const table of s.tables) {
    const withRm = table.models.some((m) => m.rm);
    const head =
      '<tr><th rowspan="2">#</th><th rowspan="2">prompt</th>' +
      table.models.map((m) => `<th colspan="${withRm ? 3 : 2}">${escapeHtml(m.name)}</th>`).join('') +
      '</tr><tr>' +
      table.models.map(() => `<th>answer</th><th>judge</th>${withRm ? '<th>RM</th>' : ''}`).join('') +
      '</tr>';
    const base = table.models[0]!;
    const rows = s.prompts.map((prompt, i) => {
      const cells = table.models.map((m, k) => {
        const cls = k === 0 ? '' : m.judge[i]! > base.judge[i]! ? ' win' : m.judge[i]! < base.judge[i]! ? ' loss' : '';
        return `<td class="text">${escapeHtml(m.answers[i]!)}</td><td class="num${cls}">${score(m.judge[i])}</td>${withRm ? `<td class="num">${score(m.rm?.[i])}</td>` : ''}`;
      });
      return `<tr><td class="num">${i + 1}</td><td class="text prompt">${escapeHtml(prompt)}</td>${cells.join('')}</tr>`;
    });
    parts.push(
      `<h3>${escapeHtml(table.decoding)} decoding</h3>`,
      effectSummary(table, s.judge),
      `<table class="answers" data-decoding="${escapeHtml(table.decoding)}"><thead>${head}</thead>\n<tbody>\n${rows.join('\n')}\n</tbody></table>`,
    );
  }
  parts.push('</section>');
  return parts.join('\n');
}
