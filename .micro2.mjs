import { createRequire } from 'node:module';
const a = createRequire(import.meta.url)('/work/wt/gen/native/engine/build/Release/rlhf_engine.node');
a.setThreads?.(Number(process.env.RLHF_THREADS ?? 1));
const time = (f, n) => { f(); const c0 = process.cpuUsage(); for (let i = 0; i < n; i++) f(); const c = process.cpuUsage(c0); return (c.user + c.system) / 1000 / n; };
const R = Number(process.argv[2] ?? 16);
let tot = 0;
for (const [K, N, io] of [[768, 2304, 1], [768, 768, 1], [768, 3072, 1], [3072, 768, 1], [768, 2304, 0], [3072, 768, 0], [192, 512, 0], [512, 192, 0]]) {
  const x = new Float32Array(R * K).fill(0.1), W = new Float32Array(K * N).fill(0.01), y = new Float32Array(R * N);
  const ms = time(() => a.decodeHead(x, null, null, W, y, [R, K, N, 0, io], [1e-5, 0, 0]), 20);
  console.log(`K ${K} N ${N} ${io ? 'in_out' : 'out_in'}: ${ms.toFixed(3)} ms CPU, ${(R * K * N / ms / 1e6).toFixed(1)} GMAC/s`);
}
