/**
 * Runs the bench itself in a child process, so that a case's peak RSS is its own and a case that runs out of memory
 * ends that process only. The child writes its JSON result to a file; its table and progress are passed through.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How to start the bench: this node with its loader flags (tsx in development) and the entry next to this file. */
export function benchCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  return [...process.execArgv, join(here, '..', here.endsWith('.ts') ? 'index.ts' : 'index.js')];
}

export interface ChildResult {
  ok: boolean;
  /** The child's JSON result (absent when it failed). */
  json: Record<string, unknown> | null;
  /** The child's last stderr line when it failed. */
  error: string | null;
  stdout: string;
}

/** Threads of every CPU engine: the native engine's, OpenBLAS's and XNNPACK's. */
export function threadEnv(n: number): Record<string, string> {
  return { RLHF_THREADS: String(n), RLHF_BLAS_THREADS: String(n), RLHF_WASM_THREADS: String(n) };
}

/**
 * Runs `bench <argv> --json FILE` in a child. Its stderr (progress) streams through, or with `log` is handed to it
 * line by line once the child ends. A failing child's reason is the error it recorded in FILE (index.ts does on
 * failure), else its last stderr line, else how it ended (a kill by the kernel's OOM killer has no message).
 */
export function runBenchChild(argv: string[], opts: { env?: Record<string, string>; command?: string[]; log?: (m: string) => void } = {}): ChildResult {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-bench-'));
  const file = join(dir, 'result.json');
  const [exe, ...pre] = [process.execPath, ...(opts.command ?? benchCommand())];
  try {
    const r = spawnSync(exe!, [...pre, ...argv, '--json', file], {
      env: { ...process.env, ...opts.env }, encoding: 'utf8', maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', opts.log ? 'pipe' : 'inherit'],
    });
    const stderr = (r.stderr ?? '').trim();
    if (opts.log && stderr) for (const line of stderr.split('\n')) opts.log(`  | ${line}`);
    const json = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : null;
    if (r.status === 0 && json && !json.error) return { ok: true, json, error: null, stdout: r.stdout ?? '' };
    const last = stderr.split('\n').filter(Boolean).pop()?.replace(/^bench: /, '');
    const why = typeof json?.error === 'string' ? json.error
      : r.signal ? `killed by ${r.signal}${r.signal === 'SIGKILL' ? ' (out of memory?)' : ''}` : last || `exit ${r.status}`;
    return { ok: false, json: null, error: why, stdout: r.stdout ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
