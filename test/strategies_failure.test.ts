// A rank that dies or hangs mid-training must end the job with a clear error, never leave the others waiting forever.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixtureDir } from './helpers/fixtures.js';
import { mpirun, skipWithoutMpi, WORKER } from './strategies_launch.js';
import type { Job } from './strategies_worker.js';

const skip = skipWithoutMpi();

describe.skipIf(skip)('a failing rank under mpirun', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-fail-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const job = (strategy: string, fail: 'SIGKILL' | 'SIGSTOP'): Job => ({
    name: `${strategy}-${fail}`, strategy, fail, modelDir: fixtureDir('gpt2'), steps: 1, batchPerRank: 1, accumulationSteps: 1,
    seqLen: 8, lr: 1e-3, gradClip: 1, weightDecay: 0,
  });

  it('killed (SIGKILL): the job stops within seconds, naming the dead rank', async () => {
    const r = await mpirun(2, WORKER, [dir, JSON.stringify([job('ddp', 'SIGKILL')])], { env: { RLHF_MPI_TIMEOUT: '60' }, timeoutMs: 120_000 });
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/rank 1 .*exited on signal 9/);
    // mpirun notices the death and stops rank 0 long before the 60 s collective timeout.
    expect(r.seconds).toBeLessThan(55);
  });

  it('hung (SIGSTOP): the collective times out on rank 0 with a clear error and the job is aborted', async () => {
    const r = await mpirun(2, WORKER, [dir, JSON.stringify([job('zero2', 'SIGSTOP')])], { env: { RLHF_MPI_TIMEOUT: '8' }, timeoutMs: 120_000 });
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/error: MPI \w+ timed out after \d+ s on rank 0 of 2: another rank has died, hung/);
    // Our abort path announces itself; mpirun's own MPI_ABORT banner is usually printed too, but Open MPI sometimes
    // garbles it (show_help "Data unpack would read past end of buffer"), so either one counts.
    expect(r.output).toMatch(/rank 0: exiting with code 1; aborting the MPI job|MPI_ABORT was invoked on rank 0/);
    expect(r.seconds).toBeLessThan(100);
  });
});
