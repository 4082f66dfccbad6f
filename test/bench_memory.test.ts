/**
 * The bench's memory cases and its child processes: cases too large for the wasm heap are reported without being run,
 * the others run each in a child at toy shapes and report a peak RSS and a throughput, and a failing child is reported
 * instead of ending the bench.
 */
import { describe, it, expect } from 'vitest';
import { backendLimitBytes, caseFrozenDtype, MEMORY_CASES, memorySuite, minimumBytes, TINY_ARGS } from '../src/bench/memory_suite.js';

const TSX = ['--import', 'tsx', 'src/bench/index.ts'];
const GiB = 2 ** 30;
const byName = (n: string) => MEMORY_CASES.find((c) => c.name === n)!;

describe('bench memory cases', () => {
  it('weights and optimizer state: which cases the 4 GiB wasm heap cannot hold', () => {
    expect(backendLimitBytes('wasm')).toBe(4 * GiB);
    // 124.4M float32 weights + gradient + two AdamW moments = 16 B per parameter ≈ 1.85 GiB
    expect(minimumBytes(byName('sft-gpt2-124m')) / GiB).toBeCloseTo((124.44e6 * 16) / GiB, 1);
    for (const n of ['rm-opt-350m', 'lora-sft-opt-1.3b', 'lora-sft-qwen2.5-1.5b', 'ppo-gpt2-124m']) expect(minimumBytes(byName(n), [], 'float32'), n).toBeGreaterThan(4 * GiB);
    // frozen weights in bf16 (the cases' default): 2 B each; the LoRA bases then fit the wasm heap, four PPO models do not
    expect(minimumBytes(byName('ppo-gpt2-124m')) / GiB).toBeCloseTo((124.44e6 * (2 * 16 + 2 * 2)) / GiB, 1);
    expect(minimumBytes(byName('ppo-gpt2-124m'))).toBeGreaterThan(4 * GiB);
    for (const n of ['lora-sft-opt-1.3b', 'lora-sft-qwen2.5-1.5b']) expect(minimumBytes(byName(n)), n).toBeLessThan(4 * GiB);
    expect(minimumBytes(byName('ppo-lora-gpt2-124m')) / minimumBytes(byName('ppo-lora-gpt2-124m'), [], 'float32')).toBeCloseTo(0.5, 2);
    expect(minimumBytes(byName('ppo-lora-gpt2-124m'), [], 'float32')).toBeLessThan(1.6 * GiB);
  });

  it('frozen dtype per case: bf16 where weights are frozen (or as asked), none where everything trains', () => {
    for (const n of ['sft-gpt2-124m', 'rm-opt-350m']) expect(caseFrozenDtype(byName(n), 'int8'), n).toBeNull();
    for (const n of ['lora-sft-opt-1.3b', 'lora-sft-qwen2.5-1.5b', 'ppo-gpt2-124m', 'ppo-lora-gpt2-124m']) {
      expect(caseFrozenDtype(byName(n)), n).toBe('bf16');
      expect(caseFrozenDtype(byName(n), 'nf4'), n).toBe('nf4');
    }
  });

  it('a case that cannot fit is reported, not run', () => {
    const r = memorySuite({ backend: 'wasm', cases: ['rm-opt-350m'], log: () => {}, command: ['--no-such-flag'] });
    expect(r.cases[0]!.fits).toBe(false);
    expect(r.cases[0]!.note).toMatch(/does not fit on wasm: .* 4\.9 GiB of at most 4 \(not run\)/);
    expect(() => memorySuite({ backend: 'wasm', cases: ['nope'], log: () => {} })).toThrow(/unknown memory case/);
  });

  it('toy shapes: each case in its own process reports peak RSS and tokens/s; a failing child is reported', () => {
    const r = memorySuite({ backend: 'cpu', cases: ['sft-gpt2-124m', 'ppo-lora-gpt2-124m'], extraArgs: TINY_ARGS, command: TSX, log: () => {} });
    for (const c of r.cases) {
      expect(c.fits, `${c.name}: ${c.note}`).toBe(true);
      expect(c.peakRssBytes!).toBeGreaterThan(2 ** 20);
      expect(c.tokensPerS!).toBeGreaterThan(0);
      expect(c.stepCpuS!).toBeGreaterThan(0);
      expect(c.checkpointing).toBe(true);
    }
    expect(r.cases[1]!.note).toMatch(/within the 1\.6 GiB budget/);
    expect(r.cases.map((c) => c.frozenDtype)).toEqual([null, 'bf16']);
    expect(r.rows.find((x) => x.metric === 'sft-gpt2-124m peak RSS')!.note).toMatch(/no frozen weights; with --gradient_checkpointing/);
    expect(r.rows.find((x) => x.metric === 'ppo-lora-gpt2-124m peak RSS')!.note).toMatch(/frozen weights bf16/);
    const bad = memorySuite({ backend: 'cpu', cases: ['sft-gpt2-124m'], extraArgs: [...TINY_ARGS, '--batch', '4', '--micro-batch', '3'], command: TSX, log: () => {} });
    expect(bad.cases[0]!.fits).toBe(false);
    expect(bad.cases[0]!.note).toMatch(/did not run to the end on cpu: --micro-batch 3 must divide the batch of 4/);
  });
});
