/** The `dpo` bench suite on a toy OPT shape: both variants produce finite pairs/s and leave no tensors behind. */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { benchConfig } from '../src/bench/shapes.js';
import type { SuiteOptions } from '../src/bench/suites.js';
import { dpoSuite } from '../src/bench/dpo_suite.js';

const opts: SuiteOptions = { batch: 4, seq: 12, steps: 1, genBatch: 2, promptLen: 4, newTokens: 3, decodeSteps: 2, skipGeneration: true, profileTop: 0, log: () => {} };

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('bench dpo', () => {
  it('pairs/s with and without a reference, with gradient accumulation and with LoRA (adapter-off reference), no tensors left behind', async () => {
    const config = benchConfig('opt-125m', { layers: 1, width: 32, heads: 2, vocab: 97 });
    const before = tf.memory().numTensors;
    for (const [microBatch, loraRank] of [[undefined, 0], [2, 0], [undefined, 2]] as const) {
      const r = await dpoSuite(config, { ...opts, microBatch, loraRank });
      for (const k of ['dpo_ref_pairs_per_s', 'dpo_noref_pairs_per_s', 'dpo_ref_step_s', 'dpo_noref_step_s']) expect(r.metrics[k], k).toBeGreaterThan(0);
      expect(r.rows.map((x) => x.metric)).toEqual(expect.arrayContaining(['DPO pairs/s, with reference', 'DPO pairs/s, reference-free']));
    }
    expect(tf.memory().numTensors).toBe(before);
    await expect(dpoSuite(config, { ...opts, microBatch: 3 })).rejects.toThrow(/--micro-batch 3 must divide/);
  });
});
