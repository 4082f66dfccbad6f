import { chooseToken } from '../src/models/sampling.js';
import { chooseToken as oldChoose } from './sampling_old.js';
import { Rng } from '../src/engine/rng.js';
async function main() {
  const rng = new Rng(3);
  let diff = 0, total = 0;
  for (const V of [7, 100, 6400]) for (const [k, p, temp] of [[0, 1, 1], [5, 1, 0.7], [0, 0.9, 1], [20, 0.5, 1.3], [0, 0.3, 0.5]] as const) {
    for (let i = 0; i < 200; i++) {
      const l = new Float32Array(V).map(() => (rng.next() - 0.5) * 8);
      if (i % 10 === 0) l[3] = l[5] = 4; // ties
      const o = { doSample: true, temperature: temp, topK: k, topP: p, repetitionPenalty: 1 };
      if (chooseToken(l.slice(), o, new Rng(i)) !== oldChoose(l.slice(), o, new Rng(i))) diff++;
      total++;
    }
  }
  console.log(`${diff} of ${total} draws differ`);
}
main();
