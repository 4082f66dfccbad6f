/** `npm run bench -- ddp`: the launcher runs 1 and 2 MPI ranks and reports tokens/s for each (needs Open MPI). */
import { describe, it, expect } from 'vitest';
import { runDdpBench } from '../src/bench/ddp.js';
import { skipWithoutMpi } from './strategies_launch.js';

describe.skipIf(skipWithoutMpi())('bench ddp', () => {
  it('reports 1- and 2-rank throughput, the 2-rank run processing twice the tokens per step', async () => {
    const lines: string[] = [];
    const args = ['--ranks', '1,2', '--steps', '1', '--batch', '2', '--seq', '16', '--layers', '1', '--hidden', '32', '--vocab', '97'];
    const reports = (await runDdpBench(args, (l) => lines.push(l)))!;
    expect(reports.map((r) => r.ranks)).toEqual([1, 2]);
    for (const r of reports) {
      expect(r.tokensPerS).toBeGreaterThan(0);
      expect(r.allreduceMs).toBeGreaterThanOrEqual(0);
      expect(r.params).toBe(reports[0]!.params);
    }
    // tokens/s = steps·B·T·ranks / seconds: the 2-rank figure counts both ranks' tokens
    expect(reports[1]!.tokensPerS * reports[1]!.stepS).toBeCloseTo(2 * 2 * 16, 6);
    expect(lines.join('\n')).toMatch(/ranks +tokens\/s/);
    expect(JSON.parse(lines.at(-1)!).runs).toHaveLength(2);
  }, 180_000);
});
