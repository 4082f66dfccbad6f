/**
 * The native engine's thread pool under contention: many short parallel regions back to back, more threads than
 * cores, so workers are preempted at every point of a region. A worker still finishing one region once claimed a
 * chunk of the next while its counters were being reset; the lost count hung the caller (seen as a label_pairs run
 * stuck in a decode product). Runs in a child process so that a hang is a timeout here, not a stuck suite.
 */
import { describe, it, expect } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { engineAddonPath, nativeBackendUnavailable } from '../src/engine/native_backend.js';

const why = nativeBackendUnavailable();

const CHILD = `
const e = require(process.argv[1]);
e.setThreads(Number(process.argv[2]));
const n = Number(process.argv[3]), calls = Number(process.argv[4]);
const a = new Float32Array(n), b = new Float32Array(n), out = new Float32Array(n);
let bad = 0;
for (let i = 0; i < calls; i++) {
  a.fill(i % 7); b.fill(1);
  e.binary(0, a, [n], b, [n], out, [n]);
  // every chunk written exactly once: first, middle and last element of the region
  if (out[0] !== (i % 7) + 1 || out[n >> 1] !== (i % 7) + 1 || out[n - 1] !== (i % 7) + 1) bad++;
}
console.log(JSON.stringify({ bad, threads: e.getThreads() }));
`;

describe.skipIf(why !== '')('native engine thread pool', () => {
  it('survives 60,000 short parallel regions on 8 threads (several processes at once) with every chunk done', async () => {
    // 4 chunks of 2^15 floats per call: the grain, so each region is as short as the pool allows
    const run = promisify(execFile);
    const args = ['-e', CHILD, engineAddonPath(), '8', String(1 << 17), '30000'];
    // two at once: 16 threads on the machine's cores; a hang rejects with the timeout's kill
    const outs = await Promise.all([0, 1].map(() => run(process.execPath, args, { encoding: 'utf8', timeout: 120_000 })));
    for (const { stdout } of outs) expect(JSON.parse(stdout)).toEqual({ bad: 0, threads: 8 });
  }, 150_000);
});
