/**
 * Kernel-level profile of one call through `tf.profile`: time per kernel name, the share spent in matrix products,
 * and the peak of tf.memory().numBytes during the call.
 */
import { tf } from '../engine/tf.js';

export interface KernelRow {
  name: string;
  calls: number;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalKernelMs: number;
  kernels: KernelRow[];
  /** Share of kernel time in BatchMatMul / _FusedMatMul. */
  matmulShare: number;
  /** Highest tf.memory().numBytes seen at any kernel boundary. */
  peakBytes: number;
  /** Registered-kernel calls (custom-gradient wrappers not counted). */
  kernelCalls: number;
}

const MATMUL_KERNELS = new Set(['BatchMatMul', '_FusedMatMul']);

/** Runs `fn` under tf.profile; `fn` must dispose what it creates (its result is disposed here if a tensor). */
export async function profileCall(fn: () => unknown): Promise<ProfileSummary> {
  const info = await tf.profile(() => {
    const out = fn();
    return out instanceof tf.Tensor ? out : undefined;
  });
  if (info.result instanceof tf.Tensor) info.result.dispose();
  const byName = new Map<string, KernelRow>();
  let total = 0;
  const backend = tf.getBackend();
  for (const k of info.kernels) {
    // tf.customGrad calls are recorded too, under their scope's name, with their inner kernels again inside:
    // count registered kernels only, so nothing is counted twice.
    if (!tf.getKernel(k.name, backend)) continue;
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    total += ms;
    const row = byName.get(k.name) ?? { name: k.name, calls: 0, ms: 0, share: 0 };
    row.calls += 1;
    row.ms += ms;
    byName.set(k.name, row);
  }
  const kernels = [...byName.values()].sort((a, b) => b.ms - a.ms);
  for (const r of kernels) r.share = total > 0 ? r.ms / total : 0;
  const mm = kernels.filter((r) => MATMUL_KERNELS.has(r.name)).reduce((s, r) => s + r.ms, 0);
  return {
    totalKernelMs: total, kernels, matmulShare: total > 0 ? mm / total : 0, peakBytes: info.peakBytes,
    kernelCalls: kernels.reduce((s, r) => s + r.calls, 0),
  };
}

export function formatProfile(title: string, p: ProfileSummary, top: number): string {
  const lines = [`${title}: ${p.kernelCalls} kernel calls, ${(p.totalKernelMs / 1000).toFixed(2)} s in kernels, matmul ${(100 * p.matmulShare).toFixed(1)}%`];
  lines.push(`  ${'kernel'.padEnd(28)} ${'calls'.padStart(6)} ${'ms'.padStart(10)} ${'share'.padStart(7)}`);
  for (const r of p.kernels.slice(0, top)) {
    lines.push(`  ${r.name.padEnd(28)} ${String(r.calls).padStart(6)} ${r.ms.toFixed(1).padStart(10)} ${(100 * r.share).toFixed(1).padStart(6)}%`);
  }
  return lines.join('\n');
}
