import { initBackend } from '/work/wt/gen/dist/engine/backend.js';
import { DecoderModel } from '/work/wt/gen/dist/models/decoder.js';
import { decodeStepMs } from '/work/wt/gen/dist/bench/workloads.js';
import { Rng } from '/work/wt/gen/dist/engine/rng.js';
import { benchConfig } from '/work/wt/gen/dist/bench/shapes.js';
await initBackend('native', () => {});
const model = DecoderModel.fromConfig(benchConfig('tiny-chat'), 0);
const rng = new Rng(1);
for (const steps of [3, 3, 9]) for (const pos of [10, 120]) console.log(pos, steps, JSON.stringify(decodeStepMs(model, rng, 16, pos, steps)));
