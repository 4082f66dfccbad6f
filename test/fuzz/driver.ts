/**
 * Fuzz driver, run as a child process by test/fuzz_parsers.test.ts (so a parser stuck in a loop can be killed and
 * named): replays the corpus of once-failing inputs, then feeds each target seeded mutations until its input count or
 * time budget is used. Protocol on stdout, one line each: `at <target> <input>` before every input (the parent's
 * watchdog), `fail <json>` for every input that broke a rule, `done <json>` per target.
 *
 *   node --import tsx test/fuzz/driver.ts --seed 1 --inputs 3000 --budget_ms 3000 --work DIR --failures DIR
 *     [--corpus DIR] [--targets a,b]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ruleBroken } from './driver_rules.js';
import { FuzzRng, inputSeed, mutateInput } from './mutate.js';
import { TARGETS, prepareTarget, writeInput, type FuzzTarget } from './targets.js';

/** An input slower than this is reported even if it ends (the parent kills a silent driver after longer). */
export const PER_INPUT_LIMIT_MS = 3000;

interface Outcome {
  target: string;
  input: string;
  kind: 'crash' | 'slow';
  error: string;
  saved?: string;
}

async function runOne(t: FuzzTarget, path: string, dir: string, index: number): Promise<{ failure: Omit<Outcome, 'target' | 'input'> | null; rejected: boolean }> {
  const t0 = performance.now();
  let broken: string | null = null;
  let rejected = false;
  try {
    await t.parse(path, index);
  } catch (e) {
    rejected = true;
    broken = ruleBroken(e, path, dir);
    if (broken && e instanceof Error && e.stack) broken += ` | ${e.stack.split('\n').slice(1, 4).map((l) => l.trim()).join(' < ')}`;
  }
  const ms = performance.now() - t0;
  if (broken) return { failure: { kind: 'crash', error: broken }, rejected };
  if (ms > PER_INPUT_LIMIT_MS) return { failure: { kind: 'slow', error: `took ${ms.toFixed(0)} ms (limit ${PER_INPUT_LIMIT_MS})` }, rejected };
  return { failure: null, rejected };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '20261201' },
      inputs: { type: 'string', default: '3000' },
      budget_ms: { type: 'string', default: '3000' },
      work: { type: 'string' },
      failures: { type: 'string' },
      corpus: { type: 'string' },
      targets: { type: 'string' },
    },
  });
  const seed = Number(values.seed);
  const maxInputs = Number(values.inputs);
  const budgetMs = Number(values.budget_ms);
  const wanted = values.targets ? new Set(values.targets.split(',')) : null;
  const out = (line: string) => process.stdout.write(line + '\n');

  for (const t of TARGETS.filter((x) => !wanted || wanted.has(x.name))) {
    const { dir, path, seeds } = prepareTarget(t, values.work!);
    const fail = (o: Outcome, bytes: Uint8Array) => {
      const saveDir = join(values.failures!, t.name);
      mkdirSync(saveDir, { recursive: true });
      o.saved = join(saveDir, `${o.input.replace(/[^\w.-]/g, '_')}-${t.file}`);
      writeFileSync(o.saved, bytes);
      out(`fail ${JSON.stringify(o)}`);
    };
    let failures = 0;
    // 0. One untimed parse of a seed, so one-off start-up costs (a worker thread, lazy imports) count against no input.
    writeInput(path, seeds[0]!);
    await t.parse(path, 0).catch(() => {});
    // 1. The corpus: inputs that once broke a rule, replayed on every run.
    const corpusDir = values.corpus ? join(values.corpus, t.name) : '';
    let corpus = 0;
    if (corpusDir && existsSync(corpusDir)) {
      for (const name of readdirSync(corpusDir).sort()) {
        const bytes = readFileSync(join(corpusDir, name));
        writeInput(path, bytes);
        out(`at ${t.name} corpus/${name}`);
        const { failure } = await runOne(t, path, dir, corpus++);
        if (failure) {
          failures++;
          fail({ target: t.name, input: `corpus/${name}`, ...failure }, bytes);
        }
      }
    }
    // 2. Fresh mutations until the count or the time budget is used.
    const t0 = performance.now();
    let inputs = 0;
    let rejected = 0;
    for (let i = 0; i < maxInputs && performance.now() - t0 < budgetMs; i++) {
      const bytes = mutateInput(seeds, new FuzzRng(inputSeed(seed, t.name, i)), t.structure, t.gzip ?? false);
      writeInput(path, bytes);
      out(`at ${t.name} ${i}`);
      const r = await runOne(t, path, dir, i);
      inputs++;
      if (r.rejected) rejected++;
      if (r.failure) {
        failures++;
        fail({ target: t.name, input: String(i), ...r.failure }, bytes);
      }
    }
    const ms = Math.round(performance.now() - t0);
    out(`done ${JSON.stringify({ target: t.name, corpus, inputs, rejected, failures, ms })}`);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`fuzz driver failed: ${(e as Error)?.stack ?? e}\n`);
    process.exit(2);
  },
);
