/** The `grpo` bench suite on a toy model: its metrics are produced and finite, and no tensors are left behind. */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { benchConfig } from '../src/bench/shapes.js';
import type { SuiteOptions } from '../src/bench/suites.js';
import { grpoSuite } from '../src/bench/grpo_suite.js';

const opts: SuiteOptions = {
  batch: 2, seq: 16, steps: 1, genBatch: 8, promptLen: 5, newTokens: 6, decodeSteps: 2, skipGeneration: false, profileTop: 0, log: () => {},
};

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('bench grpo', () => {
  it('rollout and update throughput at G = 8, full weights and LoRA, no tensors left behind', async () => {
    for (const loraRank of [0, 2]) {
      const before = tf.memory().numTensors;
      const r = await grpoSuite(benchConfig('tiny-chat', { layers: 1, width: 32, heads: 2, vocab: 97 }), { ...opts, loraRank, trainBatch: 3 });
      expect(tf.memory().numTensors, `lora ${loraRank}`).toBe(before);
      for (const key of ['grpo_rollout_tokens_per_s', 'grpo_update_tokens_per_s', 'grpo_update_s', 'grpo_peak_bytes']) expect(r.metrics[key], key).toBeGreaterThan(0);
      expect(r.metrics.grpo_group).toBe(8);
      expect(r.rows.find((x) => x.metric === 'GRPO update tokens/s')!.note).toMatch(/8 completions of T=11 \(prompt 5 \+ 6\), 3 per micro-batch/);
    }
  });
});
