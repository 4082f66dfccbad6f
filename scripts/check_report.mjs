#!/usr/bin/env node
// Renders a report page in headless Chromium and fails on render errors; optionally screenshots the whole page.
//
//   node scripts/check_report.mjs runs/pipeline/report.html [--screenshot report.png] [--chromium /usr/bin/chromium]
//
// The report itself holds no scripts. The check loads a copy with one probe script appended that looks at what the
// browser laid out: every chart figure holds an SVG of real size with at least one drawn line (a path with a
// non-empty box), no mark with NaN/Infinity coordinates, and axis labels without exponents or repeats; the page has
// no other script, no event-handler attribute and no embedded element (img/iframe/object), which is what unescaped
// model output would bring in. The probe writes its verdict into
// <body data-rendered="ok|error" data-render-errors="[...]">, read back from --dump-dom. Anything the page logs to
// the console fails the check too.
// Exit status: 0 rendered cleanly, 1 render errors, 2 the check could not run (no Chromium, or it crashed).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const CANDIDATES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
const MAX_SCREENSHOT_HEIGHT = 16384;
// The width the page is laid out at, in both runs: the page height measured in the first sizes the screenshot.
const WIDTH = 1400;

/** The Chromium to use: `--chromium`, $CHROMIUM, or the first of the usual names on PATH; null when there is none. */
export function findChromium(explicit = process.env.CHROMIUM) {
  if (explicit) return existsSync(explicit) ? explicit : null;
  for (const name of CANDIDATES) {
    try {
      const found = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
      if (found) return found;
    } catch {
      // not on PATH
    }
  }
  return null;
}

// Runs in the page after everything else has been parsed.
const PROBE = `
(() => {
  const errors = [];
  const figures = [...document.querySelectorAll('figure.chart')];
  for (const fig of figures) {
    const name = fig.dataset.metrics || fig.dataset.metric || '(unnamed chart)';
    const svg = fig.querySelector('svg');
    if (!svg) { errors.push('chart ' + name + ': no <svg>'); continue; }
    const box = svg.getBoundingClientRect();
    if (box.width < 50 || box.height < 50) { errors.push('chart ' + name + ': blank chart area (' + Math.round(box.width) + 'x' + Math.round(box.height) + ' px)'); continue; }
    const marks = [...svg.querySelectorAll('.mark-line path, .mark-symbol path')];
    const broken = marks.filter((p) => /NaN|Infinity|undefined/.test(p.getAttribute('d') || ''));
    if (broken.length > 0) errors.push('chart ' + name + ': ' + broken.length + ' mark(s) with non-finite coordinates');
    const drawn = marks.filter((p) => {
      if (broken.includes(p) || !p.getAttribute('d')) return false;
      const b = p.getBBox();
      return b.width > 0 || b.height > 0;
    });
    if (drawn.length === 0) errors.push('chart ' + name + ': draws no line (blank chart area)');
    const labels = [...svg.querySelectorAll('.role-axis-label text')].map((t) => t.textContent);
    if (labels.length === 0) errors.push('chart ' + name + ': no axis labels');
    if (labels.some((l) => /e\\+/.test(l))) errors.push('chart ' + name + ': unreadable tick label ' + labels.find((l) => /e\\+/.test(l)));
    for (const axis of svg.querySelectorAll('.role-axis')) {
      const ticks = [...axis.querySelectorAll('.role-axis-label text')].map((t) => t.textContent);
      const repeated = ticks.filter((t, i) => ticks.indexOf(t) !== i);
      if (repeated.length > 0) errors.push('chart ' + name + ': repeated tick label ' + repeated[0]);
    }
  }
  const scripts = document.querySelectorAll('script').length;
  if (scripts !== 1) errors.push((scripts - 1) + ' <script> element(s) in the page (unescaped markup?)');
  for (const tag of ['img', 'iframe', 'object', 'embed', 'link']) {
    const n = document.querySelectorAll(tag).length;
    if (n > 0) errors.push(n + ' <' + tag + '> element(s) in the page (unescaped markup?)');
  }
  for (const el of document.querySelectorAll('*')) {
    const handler = [...el.attributes].find((a) => /^on/i.test(a.name));
    if (handler) { errors.push('event handler attribute ' + handler.name + ' on <' + el.tagName.toLowerCase() + '> (unescaped markup?)'); break; }
  }
  if (!document.querySelector('h1')) errors.push('no page title (h1)');
  document.body.dataset.charts = String(figures.length);
  document.body.dataset.pageHeight = String(document.documentElement.scrollHeight);
  document.body.dataset.renderErrors = JSON.stringify(errors);
  document.body.dataset.rendered = errors.length === 0 ? 'ok' : 'error';
})();
`;

const BASE_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check', '--hide-scrollbars', '--mute-audio'];

function runChromium(chromium, args, profile) {
  return spawnSync(chromium, [...BASE_FLAGS, `--user-data-dir=${profile}`, ...args], { encoding: 'utf8', timeout: 240_000, maxBuffer: 256 * 1024 * 1024 });
}

function attr(body, name) {
  const m = body.match(new RegExp(`\\s${name}="([^"]*)"`));
  if (!m) return undefined;
  return m[1].replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

/**
 * Checks one report page. Returns { ok, errors, charts, screenshot } or throws when Chromium cannot run.
 */
export function checkReport(report, { screenshot, chromium = findChromium() } = {}) {
  if (!chromium) throw new Error('no Chromium found (install it: apt-get install chromium; or set CHROMIUM=/path/to/chrome)');
  if (!existsSync(report)) throw new Error(`report ${report} does not exist`);
  const work = mkdtempSync(join(tmpdir(), 'check-report-'));
  try {
    const html = readFileSync(report, 'utf8');
    const probed = join(work, 'page.html');
    const at = html.lastIndexOf('</body>');
    writeFileSync(probed, at < 0 ? html + `<script>${PROBE}</script>` : html.slice(0, at) + `<script>${PROBE}</script>\n` + html.slice(at));
    const url = pathToFileURL(probed).href;
    const dump = runChromium(chromium, ['--enable-logging=stderr', '--v=0', `--window-size=${WIDTH},1000`, '--dump-dom', url], join(work, 'profile'));
    if (dump.error) throw new Error(`chromium did not run: ${dump.error.message}`);
    const body = (dump.stdout.match(/<body[^>]*>/) ?? [])[0];
    if (dump.status !== 0 || !body) throw new Error(`chromium exited with status ${dump.status} and no page:\n${dump.stderr.slice(-2000)}`);
    const rendered = attr(body, 'data-rendered');
    const errors = rendered === undefined ? ['the probe did not run (page did not finish parsing?)'] : JSON.parse(attr(body, 'data-render-errors') ?? '[]');
    // Console output of the page itself (Chromium tags it CONSOLE); its own start-up noise is not.
    for (const line of dump.stderr.split('\n')) if (/CONSOLE/.test(line) && line.includes('page.html')) errors.push(`console: ${line.replace(/^\[[^\]]*\]\s*/, '')}`);
    const charts = Number(attr(body, 'data-charts') ?? 0);

    if (screenshot) {
      const height = Math.min(MAX_SCREENSHOT_HEIGHT, Math.max(600, Number(attr(body, 'data-page-height') ?? 2000)));
      // The original page, not the probed copy: the screenshot shows what a user opens.
      const plain = join(work, 'report.html');
      copyFileSync(report, plain);
      const shot = resolve(screenshot);
      rmSync(shot, { force: true });
      const run = runChromium(chromium, [`--screenshot=${shot}`, `--window-size=${WIDTH},${height}`, pathToFileURL(plain).href], join(work, 'profile2'));
      if (run.status !== 0 || !existsSync(shot) || statSync(shot).size < 1000) throw new Error(`chromium wrote no screenshot (status ${run.status}):\n${run.stderr.slice(-2000)}`);
    }
    return { ok: errors.length === 0, errors, charts, screenshot };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function main() {
  const args = process.argv.slice(2);
  let report;
  let screenshot;
  let chromium;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--screenshot') screenshot = args[++i];
    else if (args[i] === '--chromium') chromium = args[++i];
    else if (args[i] === '-h' || args[i] === '--help') {
      console.log('usage: node scripts/check_report.mjs REPORT.html [--screenshot OUT.png] [--chromium PATH]');
      return 0;
    } else if (report === undefined) report = args[i];
    else {
      console.error(`check_report: unexpected argument ${args[i]}`);
      return 2;
    }
  }
  if (!report) {
    console.error('usage: node scripts/check_report.mjs REPORT.html [--screenshot OUT.png] [--chromium PATH]');
    return 2;
  }
  let result;
  try {
    result = checkReport(report, { screenshot, ...(chromium ? { chromium: findChromium(chromium) } : {}) });
  } catch (e) {
    console.error(`check_report: ${e.message}`);
    return 2;
  }
  if (!result.ok) {
    console.error(`check_report: ${report} has ${result.errors.length} render error(s):`);
    for (const e of result.errors) console.error(`  ${e}`);
    return 1;
  }
  console.log(`check_report: ${report} rendered in Chromium, ${result.charts} charts, no errors${screenshot ? `; screenshot ${screenshot}` : ''}`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = main();
