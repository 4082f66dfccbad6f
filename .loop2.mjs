import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { DecodingSession } from '/work/wt/gen/dist/models/generation.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const [name, B, pos, n, reps] = [process.argv[2] ?? 'tiny-chat', Number(process.argv[3] ?? 16), Number(process.argv[4] ?? 64), Number(process.argv[5] ?? 16), Number(process.argv[6] ?? 50)];
const model = DecoderModel.fromConfig(benchConfig(name), 0);
let cpu = 0;
for (let r = 0; r < reps; r++) {
  const s = new DecodingSession(model, B, pos + n + 1);
  const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: pos }, (_, j) => (b * 7 + j * 3) % 100));
  const masks = seqs.map((r) => r.map(() => 1));
  s.nextLogits(seqs, masks).dispose();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    seqs.forEach((r) => r.push(5)); masks.forEach((r) => r.push(1));
    const l = s.nextLogits(seqs, masks); l.dataSync(); l.dispose();
  }
  const c = process.cpuUsage(c0); cpu += c.user + c.system;
  s.dispose();
}
console.log(name, 'B', B, 'pos', pos, 'steps', n, 'x', reps, 'CPU ms/step', (cpu / 1000 / n / reps).toFixed(3));
