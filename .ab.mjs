import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { generate } from '/work/wt/gen/dist/models/generation.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const [name, rounds, newTokens] = [process.argv[2] ?? 'tiny-chat', Number(process.argv[3] ?? 5), Number(process.argv[4] ?? 16)];
const c = benchConfig(name);
const model = DecoderModel.fromConfig(c, 0, process.env.PACK || undefined);
const B = 16, P = 64;
let s = 1;
const prompts = Array.from({ length: B }, () => Array.from({ length: P }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % c.vocabSize));
const res = { on: [], off: [] };
const run = (mode) => {
  if (mode === 'off') process.env.RLHF_FUSED_DECODE = '0'; else delete process.env.RLHF_FUSED_DECODE;
  const c0 = process.cpuUsage();
  const out = generate(model, prompts, null, { maxNewTokens: newTokens, eosTokenId: null });
  const u = process.cpuUsage(c0);
  res[mode].push((u.user + u.system) / 1e6);
  return out.sequences;
};
const a = run('on'), b = run('off');
console.log('same tokens:', JSON.stringify(a) === JSON.stringify(b));
res.on.length = res.off.length = 0;
for (let r = 0; r < rounds; r++) { run('on'); run('off'); }
const f = (x) => x.map((v) => v.toFixed(3)).join(' ');
console.log(name, 'generate B16 64+' + newTokens, 'CPU s  on:', f(res.on), ' off:', f(res.off), ' min on/off', Math.min(...res.on).toFixed(3), Math.min(...res.off).toFixed(3));
