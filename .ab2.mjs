import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { DecodingSession } from '/work/wt/gen/dist/models/generation.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const [name, rounds, B, P] = [process.argv[2] ?? 'tiny-chat', Number(process.argv[3] ?? 5), Number(process.argv[4] ?? 16), Number(process.argv[5] ?? 64)];
const c = benchConfig(name);
const model = DecoderModel.fromConfig(c, 0);
let s = 1;
const prompts = Array.from({ length: B }, () => Array.from({ length: P }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % c.vocabSize));
const masks = prompts.map((r) => r.map(() => 1));
const ts = [];
let out;
for (let r = 0; r < rounds; r++) {
  const sess = new DecodingSession(model, B, P + 1);
  const c0 = process.cpuUsage();
  const l = sess.nextLogits(prompts, masks);
  const u = process.cpuUsage(c0);
  out = l.dataSync().slice(0, 5); l.dispose();
  ts.push((u.user + u.system) / 1000);
  sess.dispose();
}
console.log(name, 'prefill B', B, 'P', P, 'fused calls', 'CPU ms', ts.map((t) => t.toFixed(1)).join(' '), 'min', Math.min(...ts).toFixed(1), Array.from(out).map((v) => v.toFixed(4)).join(','));
