/**
 * Timing helpers for the benchmark: wall-clock and process CPU time per call, and the machine's load, so a reader
 * can tell a slow kernel from a busy machine (CPU time stays honest when other processes share the cores).
 */
import { loadavg } from 'node:os';

export interface Timing {
  /** Wall-clock milliseconds. */
  wallMs: number;
  /** CPU milliseconds of this process (all its threads, XNNPACK workers included). */
  cpuMs: number;
}

export function timeIt<T>(fn: () => T): { result: T } & Timing {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { result, wallMs, cpuMs: (cpu.user + cpu.system) / 1000 };
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median of each field over several timings. */
export function medianTiming(ts: Timing[]): Timing {
  return { wallMs: median(ts.map((t) => t.wallMs)), cpuMs: median(ts.map((t) => t.cpuMs)) };
}

/** 1-minute load average: above the core count means the numbers are shared with other work. */
export function load1(): number {
  return loadavg()[0]!;
}
