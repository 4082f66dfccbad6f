import { chooseToken } from '../src/models/sampling.js';
import { Rng } from '../src/engine/rng.js';
async function main() {
  const rng = new Rng(1);
  for (const V of [6400, 50257]) {
    const base = new Float32Array(V).map(() => rng.next() * 10);
    for (const [k, p] of [[0, 1], [50, 1], [0, 0.9]] as const) {
      const t0 = performance.now();
      let acc = 0;
      for (let i = 0; i < 64; i++) acc += chooseToken(base.slice(), { doSample: true, temperature: 1, topK: k, topP: p, repetitionPenalty: 1 }, new Rng(i));
      console.log(`V=${V} topK=${k} topP=${p}: ${((performance.now() - t0) / 64).toFixed(3)} ms/row (${acc})`);
    }
  }
}
main();
