/**
 * Fuzz suite for every parser of untrusted files (test/fuzz/targets.ts lists them): the corpus of inputs that once
 * failed (test/fixtures/fuzz-corpus/<target>/) is replayed, then thousands of seeded mutations per parser run within
 * a time budget. Rules: no hang (a driver silent for HANG_MS is killed and the input named), no input slower than
 * the per-input limit, and every error thrown is an InputFileError naming the file. The driver runs as a child
 * process so that a parser stuck in a synchronous loop can be stopped.
 *
 * FUZZ_SEED, FUZZ_INPUTS (per parser, default 3000) and FUZZ_BUDGET_MS (per parser, default 2500) change the run;
 * failing inputs are saved under the OS temp dir: copy them into the corpus once fixed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { InputFileError } from '../src/hub/input_error.js';
import { DataError } from '../src/data/location.js';
import { ruleBroken } from './fuzz/driver_rules.js';
import { FuzzRng, inputSeed, mutateInput } from './fuzz/mutate.js';
import { TARGETS, prepareTarget } from './fuzz/targets.js';

const ROOT = join(import.meta.dirname, '..');
const DRIVER = join(ROOT, 'test', 'fuzz', 'driver.ts');
const CORPUS = join(ROOT, 'test', 'fixtures', 'fuzz-corpus');
const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const INPUTS = Number(process.env.FUZZ_INPUTS ?? 3000);
const BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 2500);
/** A driver that prints nothing for this long is stuck on its current input. */
const HANG_MS = 20_000;

interface Done {
  target: string;
  corpus: number;
  inputs: number;
  rejected: number;
  failures: number;
  ms: number;
}

interface RunResult {
  done: Done[];
  failures: string[];
  hang: string | null;
  code: number | null;
  stderr: string;
}

function runDriver(): Promise<RunResult> {
  const work = mkdtempSync(join(tmpdir(), 'fuzz-work-'));
  const failuresDir = mkdtempSync(join(tmpdir(), 'fuzz-failures-'));
  const args = ['--import', 'tsx', DRIVER, '--seed', String(SEED), '--inputs', String(INPUTS), '--budget_ms', String(BUDGET_MS),
    '--work', work, '--failures', failuresDir, '--corpus', CORPUS];
  // A corrupt Arrow file may make apache-arrow loop; its worker is given up on after 0.25 s here (30 s by default).
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, RLHF_ARROW_TIMEOUT_S: '0.25' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const result: RunResult = { done: [], failures: [], hang: null, code: null, stderr: '' };
  let current = '';
  let watchdog: NodeJS.Timeout;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      result.hang = current;
      child.kill('SIGKILL');
    }, HANG_MS);
  };
  arm();
  child.stderr.on('data', (d: Buffer) => (result.stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    arm();
    if (line.startsWith('at ')) current = line.slice(3);
    else if (line.startsWith('fail ')) result.failures.push(line.slice(5));
    else if (line.startsWith('done ')) result.done.push(JSON.parse(line.slice(5)) as Done);
  });
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(watchdog);
      result.code = code;
      if (result.hang) saveHangInput(result.hang, failuresDir);
      resolve(result);
    });
  });
}

/** Rebuilds the input a hung driver was on (inputs are a function of seed, target and index) and saves it. */
function saveHangInput(at: string, dir: string): void {
  const [name, index] = at.split(' ');
  const target = TARGETS.find((t) => t.name === name);
  if (!target || !/^\d+$/.test(index ?? '')) return;
  const { seeds } = prepareTarget(target, mkdtempSync(join(tmpdir(), 'fuzz-hang-')));
  const bytes = mutateInput(seeds, new FuzzRng(inputSeed(SEED, name!, Number(index))), target.structure, target.gzip ?? false);
  mkdirSync(join(dir, name!), { recursive: true });
  writeFileSync(join(dir, name!, `hang-${index}-${target.file}`), bytes);
}

describe('the fuzz rules', () => {
  it('accept only the project\'s own error naming the input file (or a file of its directory)', () => {
    const dir = '/m';
    expect(ruleBroken(new InputFileError('/m/a.json', 'bad'), '/m/a.json', dir)).toBeNull();
    expect(ruleBroken(new DataError({ file: '/m/a.json', line: 3 }, 'bad'), '/m/a.json', dir)).toBeNull();
    expect(ruleBroken(new InputFileError('/m/shard.safetensors', 'bad'), '/m/index.json', dir)).toBeNull();
    expect(ruleBroken(new TypeError("Cannot read properties of null (reading 'x')"), '/m/a.json', dir)).toMatch(/not an InputFileError but TypeError/);
    expect(ruleBroken(new Error('incorrect header check'), '/m/a.json', dir)).toMatch(/not an InputFileError but Error/);
    expect(ruleBroken(new DataError(undefined, 'no records'), '/m/a.json', dir)).toMatch(/names no file/);
    expect(ruleBroken(new InputFileError('/etc/passwd', 'bad'), '/m/a.json', dir)).toMatch(/names \/etc\/passwd, not the input file/);
  });

  it('rebuild the same input from (seed, target, index)', () => {
    const seeds = [Buffer.from('{"a": [1, 2, 3], "b": "text"}')];
    const one = mutateInput(seeds, new FuzzRng(inputSeed(1, 'json', 5)), 'json', false);
    expect(mutateInput(seeds, new FuzzRng(inputSeed(1, 'json', 5)), 'json', false)).toEqual(one);
    expect(mutateInput(seeds, new FuzzRng(inputSeed(1, 'json', 6)), 'json', false)).not.toEqual(one);
  });
});

describe('fuzzing every parser of untrusted files', () => {
  it(`${TARGETS.length} parsers, seed ${SEED}: no hang, no crash, every error the project's own naming the file`, async () => {
    const r = await runDriver();
    const table = r.done.map((d) => `${d.target.padEnd(18)} ${String(d.inputs).padStart(5)} inputs (${d.rejected} rejected) + ${d.corpus} corpus in ${d.ms} ms`);
    console.log(`fuzz seed ${SEED}:\n${table.join('\n')}`);
    expect(r.hang, `the driver hung on input "${r.hang}"`).toBeNull();
    expect(r.failures, r.failures.join('\n')).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.done.map((d) => d.target)).toEqual(TARGETS.map((t) => t.name));
    // The corpus was replayed, and every parser ran (counts are printed above: thousands per parser on an idle
    // machine for most; the budget is time, so a loaded machine runs fewer).
    expect(r.done.reduce((n, d) => n + d.corpus, 0)).toBeGreaterThan(0);
    for (const d of r.done) expect(d.inputs, d.target).toBeGreaterThanOrEqual(Math.min(INPUTS, 10));
  }, 240_000);
});
