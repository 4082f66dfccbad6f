import { initBackend } from '../src/engine/backend.js';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { Rng } from '../src/engine/rng.js';
async function main() {
await initBackend('wasm', () => {});
const m = loadPretrained('models/tiny-chat').model;
const rng = new Rng(1);
const B = Number(process.env.B ?? 16), P = 64, N = Number(process.env.N ?? 16);
const ids = Array.from({ length: B }, () => Array.from({ length: P }, () => 3 + rng.int(6000)));
const mask = ids.map((r) => r.map(() => 1));
const opts = { maxNewTokens: N, doSample: true, temperature: 1, topK: 50, eosTokenId: null, padTokenId: 0, rng };
generate(m, ids, mask, { ...opts, maxNewTokens: 2 });
for (let k = 0; k < 2; k++) {
  const t0 = performance.now();
  generate(m, ids, mask, opts);
  const ms = performance.now() - t0;
  console.log(`B=${B} N=${N}: ${ms.toFixed(0)} ms, ${(B * N / ms * 1000).toFixed(1)} tok/s`);
}
const prof = await tf.profile(() => { generate(m, ids, mask, opts); });
const by = new Map<string, number>();
for (const k of prof.kernels) by.set(k.name, (by.get(k.name) ?? 0) + (k.kernelTimeMs as number));
const tot = [...by.values()].reduce((a, b) => a + b, 0);
console.log('kernel ms total', tot.toFixed(0), [...by].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, v]) => `${n} ${v.toFixed(0)}`).join(', '));
console.log('kernel count', prof.kernels.length);

}
if (!process.env.SPLIT && !process.env.DETAIL) main();
async function split() {
  await initBackend('wasm', () => {});
  const m = loadPretrained('models/tiny-chat').model;
  const rng = new Rng(1);
  const B = 16, P = 64;
  const ids = Array.from({ length: B }, () => Array.from({ length: P }, () => 3 + rng.int(6000)));
  const mask = ids.map((r) => r.map(() => 1));
  for (const N of [1, 2, 1, 2, 17, 33]) {
    const t0 = performance.now();
    generate(m, ids, mask, { maxNewTokens: N, doSample: true, temperature: 1, topK: 50, eosTokenId: null, padTokenId: 0, rng });
    console.log(`N=${N}: ${(performance.now() - t0).toFixed(0)} ms`);
  }
}
if (process.env.SPLIT) split();
async function detail() {
  await initBackend('wasm', () => {});
  const m = loadPretrained('models/tiny-chat').model;
  const rng = new Rng(1);
  const B = 16, P = 64;
  const ids = Array.from({ length: B }, () => Array.from({ length: P }, () => 3 + rng.int(6000)));
  const mask = ids.map((r) => r.map(() => 1));
  const o = { maxNewTokens: 9, doSample: true, temperature: 1, topK: 50, eosTokenId: null, padTokenId: 0, rng };
  generate(m, ids, mask, o);
  const prof = await tf.profile(() => { generate(m, ids, mask, o); });
  const by = new Map<string, { ms: number; n: number }>();
  for (const k of prof.kernels) {
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const e = by.get(key) ?? { ms: 0, n: 0 };
    e.ms += k.kernelTimeMs as number; e.n++;
    by.set(key, e);
  }
  for (const [k, v] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) console.log(v.ms.toFixed(1), v.n, k);
}
if (process.env.DETAIL) detail();
