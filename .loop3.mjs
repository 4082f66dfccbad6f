import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { NativeKVCache } from '/work/wt/gen/dist/engine/native_decode.js';
import { FusedDecodeStep } from '/work/wt/gen/dist/models/fused_decode.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const [name, B, pos, n] = [process.argv[2] ?? 'tiny-chat', Number(process.argv[3] ?? 16), Number(process.argv[4] ?? 72), Number(process.argv[5] ?? 500)];
const c = benchConfig(name);
const model = DecoderModel.fromConfig(c, 0, process.env.PACK || undefined);
const cache = new NativeKVCache(B, c.numLayers, c.numKvHeads, c.headDim, pos + 1);
cache.mask.fill(1);
const f = new FusedDecodeStep(model);
const ids = Array.from({ length: B }, (_, b) => [b + 3]);
const positions = new Int32Array(B).fill(pos);
const run = () => { cache.length = pos; return f.logits(ids, positions, cache); };
for (let i = 0; i < 20; i++) run();
const ts = [];
for (let r = 0; r < 10; r++) {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n / 10; i++) run();
  const u = process.cpuUsage(c0);
  ts.push((u.user + u.system) / 1000 / (n / 10));
}
ts.sort((a, b) => a - b);
console.log(name, 'B', B, 'pos', pos, 'CPU ms/step min', ts[0].toFixed(3), 'median', ts[5].toFixed(3));
{
  const t0 = performance.now();
  for (let i = 0; i < n / 2; i++) run();
  console.log('wall ms/step', ((performance.now() - t0) / (n / 2)).toFixed(2));
}
