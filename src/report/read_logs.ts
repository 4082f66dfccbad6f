/**
 * Reading what `MetricsLogger` (src/trainer/metrics.ts) wrote: `metrics.jsonl` (one `{step, key: value, ...}` per
 * line) and `samples.jsonl` (one `{step, tag, text[, wall_time]}` per line), and finding the stage log directories
 * the user pointed at.
 */
import fs from 'node:fs';
import path from 'node:path';
import { METRICS_FILE, SAMPLES_FILE } from '../trainer/metrics.js';

/** One logged value. `null` is how JSON carries a NaN or Infinity the trainer logged. */
export interface MetricPoint {
  step: number;
  value: number | null;
}

/** One sample generation from samples.jsonl. */
export interface SampleRecord {
  step: number;
  tag: string;
  text: string;
  /** Seconds since the epoch, when the writer recorded it. */
  wallTime?: number;
}

/** Everything one stage logged. */
export interface StageLogs {
  /** Section title: the stage's folder name (`sft`, `rm`, `ppo`, ...). */
  name: string;
  dir: string;
  /** Metric key -> points sorted by step, keys in the order they first appear in metrics.jsonl. */
  metrics: Map<string, MetricPoint[]>;
  samples: SampleRecord[];
  /** Things skipped while reading (e.g. a half-written last line after a crash), shown in the report. */
  warnings: string[];
}

/** A directory holding metrics.jsonl and the section name it gets. */
export interface StageDir {
  name: string;
  dir: string;
}

/**
 * Turns the `--log_dir` arguments into stage directories. Each argument is either a log directory (holds
 * metrics.jsonl) or a parent whose subdirectories hold one, directly or in a `logs/` folder (`runs/demo` with
 * `sft/logs`, `rm/logs`, `ppo/logs`). Subdirectories come in the order their metrics were last written, which
 * is the order the stages ran.
 */
export function findStageDirs(logDirs: readonly string[]): StageDir[] {
  if (logDirs.length === 0) throw new Error('report: no log directory given (--log_dir DIR)');
  const stages: StageDir[] = [];
  for (const given of logDirs) {
    if (!fs.existsSync(given)) throw new Error(`report: log directory ${given} does not exist`);
    if (!fs.statSync(given).isDirectory()) throw new Error(`report: ${given} is not a directory (expected a log directory holding ${METRICS_FILE})`);
    if (fs.existsSync(path.join(given, METRICS_FILE))) {
      stages.push({ name: stageName(given), dir: given });
      continue;
    }
    const children = fs
      .readdirSync(given, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => [path.join(given, e.name), path.join(given, e.name, 'logs')])
      .map((candidates) => candidates.find((d) => fs.existsSync(path.join(d, METRICS_FILE))))
      .filter((d): d is string => d !== undefined)
      .map((dir) => ({ dir, mtime: fs.statSync(path.join(dir, METRICS_FILE)).mtimeMs }))
      .sort((a, b) => a.mtime - b.mtime || a.dir.localeCompare(b.dir));
    if (children.length === 0) {
      throw new Error(
        `report: no ${METRICS_FILE} in ${given}, nor in its subdirectories (or their logs/ folders); ` +
          'point --log_dir at the directory a trainer logged to (default <save_path>/logs)',
      );
    }
    for (const { dir } of children) stages.push({ name: stageName(dir), dir });
  }
  return uniqueNames(stages);
}

/** `runs/demo/sft/logs` -> `sft`; `runs/demo/sft` -> `sft`. */
function stageName(dir: string): string {
  const resolved = path.resolve(dir);
  const base = path.basename(resolved);
  return base === 'logs' ? path.basename(path.dirname(resolved)) : base;
}

/** Two stages with the same folder name (`a/sft`, `b/sft`) get their paths as names instead. */
function uniqueNames(stages: StageDir[]): StageDir[] {
  const counts = new Map<string, number>();
  for (const s of stages) counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
  return stages.map((s) => (counts.get(s.name)! > 1 ? { ...s, name: s.dir } : s));
}

/** Reads one stage's metrics.jsonl (required) and samples.jsonl (optional). */
export function readStageLogs(stage: StageDir): StageLogs {
  const metricsPath = path.join(stage.dir, METRICS_FILE);
  if (!fs.existsSync(metricsPath)) {
    throw new Error(`report: ${stage.dir} has no ${METRICS_FILE} (is it the log directory a trainer wrote to?)`);
  }
  const warnings: string[] = [];
  const metrics = readMetrics(metricsPath, warnings);
  const samplesPath = path.join(stage.dir, SAMPLES_FILE);
  const samples = fs.existsSync(samplesPath) ? readSamples(samplesPath, warnings) : [];
  return { name: stage.name, dir: stage.dir, metrics, samples, warnings };
}

/**
 * Parses metrics.jsonl. A step logged twice (a resumed run re-logs the steps after its checkpoint) keeps the later
 * line's value, so the chart shows the run that produced the final model.
 */
export function readMetrics(file: string, warnings: string[] = []): Map<string, MetricPoint[]> {
  const byKey = new Map<string, Map<number, number | null>>();
  for (const { record, line } of readJsonLines(file, warnings)) {
    const step = requireStep(record, file, line);
    for (const [key, value] of Object.entries(record)) {
      if (key === 'step') continue;
      if (value !== null && typeof value !== 'number') {
        throw new Error(`${file}:${line}: field '${key}' must be a number (or null for NaN/Infinity), got ${JSON.stringify(value)}`);
      }
      let points = byKey.get(key);
      if (!points) byKey.set(key, (points = new Map()));
      points.set(step, value);
    }
  }
  const metrics = new Map<string, MetricPoint[]>();
  for (const [key, points] of byKey) {
    metrics.set(key, [...points].map(([step, value]) => ({ step, value })).sort((a, b) => a.step - b.step));
  }
  return metrics;
}

/** Parses samples.jsonl. */
export function readSamples(file: string, warnings: string[] = []): SampleRecord[] {
  const samples: SampleRecord[] = [];
  for (const { record, line } of readJsonLines(file, warnings)) {
    const step = requireStep(record, file, line);
    const { tag, text } = record;
    if (typeof tag !== 'string') throw new Error(`${file}:${line}: field 'tag' must be a string, got ${JSON.stringify(tag)}`);
    if (typeof text !== 'string') throw new Error(`${file}:${line}: field 'text' must be a string, got ${JSON.stringify(text)}`);
    const wallTime = record.wall_time ?? record.wallTime;
    if (wallTime !== undefined && typeof wallTime !== 'number') {
      throw new Error(`${file}:${line}: field 'wall_time' must be a number of seconds, got ${JSON.stringify(wallTime)}`);
    }
    samples.push({ step, tag, text, ...(wallTime !== undefined ? { wallTime } : {}) });
  }
  return samples;
}

/**
 * The JSON objects of a .jsonl file with their 1-based line numbers; blank lines are skipped. A last line without
 * its newline that does not parse is what a crash mid-write leaves: it is skipped with a warning, not an error.
 */
function readJsonLines(file: string, warnings: string[]): { record: Record<string, unknown>; line: number }[] {
  const content = fs.readFileSync(file, 'utf8');
  const lines = content.split('\n');
  const out: { record: Record<string, unknown>; line: number }[] = [];
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    const isUnterminatedLast = i === lines.length - 1;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (e) {
      if (isUnterminatedLast) {
        warnings.push(`${file}:${i + 1}: skipped an incomplete last line (the run was probably interrupted mid-write)`);
        return;
      }
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      throw new Error(`${file}:${i + 1}: expected a JSON object, got ${JSON.stringify(record)}`);
    }
    out.push({ record: record as Record<string, unknown>, line: i + 1 });
  });
  return out;
}

function requireStep(record: Record<string, unknown>, file: string, line: number): number {
  const step = record.step;
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
    throw new Error(`${file}:${line}: field 'step' must be an integer >= 0, got ${JSON.stringify(step)}`);
  }
  return step;
}
