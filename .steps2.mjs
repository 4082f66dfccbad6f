import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { DecodingSession } from '/work/wt/gen/dist/models/generation.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const B = 16;
const model = DecoderModel.fromConfig(benchConfig('tiny-chat'), 0);
for (const pos of [10, 120, 10, 120, 500]) {
  const s = new DecodingSession(model, B, pos + 10);
  const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: pos }, (_, j) => (b * 7 + j * 3) % 100));
  const masks = seqs.map((r) => r.map(() => 1));
  s.nextLogits(seqs, masks).dispose();
  const ts = [];
  for (let i = 0; i < 10; i++) {
    seqs.forEach((r) => r.push(5)); masks.forEach((r) => r.push(1));
    const c0 = process.cpuUsage();
    const l = s.nextLogits(seqs, masks); l.dataSync(); l.dispose();
    const c = process.cpuUsage(c0); ts.push(((c.user + c.system) / 1000).toFixed(1));
  }
  console.log('pos', pos, ts.join(' '));
  s.dispose();
}
