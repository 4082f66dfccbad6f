import { createRequire } from 'node:module';
const a = createRequire(import.meta.url)('/work/wt/gen/native/engine/build/Release/rlhf_engine.node');
a.setThreads?.(Number(process.env.RLHF_THREADS ?? 1));
const time = (f, n) => { f(); const c0 = process.cpuUsage(); const t0 = performance.now(); for (let i = 0; i < n; i++) f(); const c = process.cpuUsage(c0); return `${((c.user + c.system) / 1000 / n).toFixed(2)} ms CPU, ${((performance.now() - t0) / n).toFixed(2)} ms wall`; };
const R = 16;
for (const [C, V] of [[768, 50257], [192, 6400]]) {
  const x = new Float32Array(R * C).fill(0.1), head = new Float32Array(V * C).fill(0.01), logits = new Float32Array(R * V);
  console.log('head', C, V, time(() => a.decodeHead(x, null, null, head, logits, [R, C, V, 0, 0], [1e-5, 0, 0]), 5), 'GMAC/s', (R*C*V/1e9).toFixed(2), '×');
  const W = new Float32Array(V * C).fill(0.01);
  console.log('head as inOut', C, V, time(() => a.decodeHead(x, null, null, W, logits, [R, C, V, 0, 1], [1e-5, 0, 0]), 5));
}
