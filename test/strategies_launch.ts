/** Launching the strategies worker under mpirun from a test, and knowing whether that is possible here. */
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { mpiAddonAvailable } from '../src/strategies/mpi.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const WORKER = join(REPO_ROOT, 'test', 'strategies_worker.ts');

/** Set to 1 (CI does) to fail instead of skip when Open MPI or the addon is missing. */
export const REQUIRE_MPI_ENV = 'RLHF_REQUIRE_MPI';

/** Why multi-process tests cannot run here, or '' when they can. */
export function mpiMissing(): string {
  const probe = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'mpirun is not installed (apt-get install libopenmpi-dev openmpi-bin)';
  if (!mpiAddonAvailable()) return 'the MPI addon is not built (npm run build:mpi)';
  return '';
}

/** Skip when MPI is missing, unless RLHF_REQUIRE_MPI=1, where the missing piece fails the run. */
export function skipWithoutMpi(): boolean {
  const why = mpiMissing();
  if (!why) return false;
  if (process.env[REQUIRE_MPI_ENV] === '1') throw new Error(`${REQUIRE_MPI_ENV}=1 but ${why}`);
  console.warn(`skipping multi-process strategy tests: ${why}`);
  // The reason also stands as a skipped test's title, so every reporter shows why the suite did not run.
  describe('multi-process strategies', () => {
    it.skip(`skipped: ${why} (${REQUIRE_MPI_ENV}=1 makes this a failure)`, () => {});
  });
  return true;
}

export interface LaunchResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  seconds: number;
}

/** `mpirun -np <np> node --import tsx <script> ...args`, killed after `timeoutMs` (a hang fails, never blocks). */
export function mpirun(np: number, script: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<LaunchResult> {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const argv = ['--oversubscribe', ...(root ? ['--allow-run-as-root'] : []), '-np', String(np), process.execPath, '--import', 'tsx', script, ...args];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('mpirun', argv, { cwd: REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // SIGTERM lets mpirun take its ranks down with it; SIGKILL if it does not go.
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }, opts.timeoutMs ?? 240_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output, seconds: (performance.now() - t0) / 1000 });
    });
  });
}
