import { createRequire } from 'node:module';
const a = createRequire(import.meta.url)('/work/wt/gen/native/engine/build/Release/rlhf_engine.node');
a.setThreads?.(1);
const time = (f, n) => { f(); const c0 = process.cpuUsage(); for (let i = 0; i < n; i++) f(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000 / n; };
const R = 16;
for (const [K, N, io] of [[768*144, 16, 1], [768*9, 256, 1], [768, 2304, 1]]) {
  const x = new Float32Array(R * K).fill(0.1), W = new Float32Array(K * N).fill(0.01), y = new Float32Array(R * N);
  const ms = time(() => a.decodeHead(x, null, null, W, y, [R, K, N, 0, io], [1e-5, 0, 0]), 20);
  console.log(`K ${K} N ${N} ${io ? 'in_out' : 'out_in'}: ${ms.toFixed(3)} ms CPU, ${(R * K * N / ms / 1e6).toFixed(1)} GMAC/s`);
}
