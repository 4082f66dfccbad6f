/** The benchmark's suites on a toy model: every metric is produced, finite and sensible, and the report formats. */
import { describe, it, expect, beforeAll } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { benchConfig, describeConfig } from '../src/bench/shapes.js';
import { foundationSuite, sftSuite, type SuiteOptions } from '../src/bench/suites.js';
import { ppoSuite, rmSuite } from '../src/bench/rlhf_suites.js';
import { formatTable } from '../src/bench/report.js';
import { DecoderModel } from '../src/models/decoder.js';
import { setUnbatchedMatmul } from '../src/models/ops/matmul.js';

const toy = (preset: 'small' | 'tiny-chat') => benchConfig(preset, { layers: 1, width: 32, heads: 2, vocab: 97 });
const opts: SuiteOptions = {
  batch: 2, seq: 16, steps: 1, genBatch: 2, promptLen: 4, newTokens: 3, decodeSteps: 2, skipGeneration: false,
  profileTop: 0, log: () => {},
};

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  setUnbatchedMatmul(true);
});

describe('bench suites', () => {
  it('foundation: training, generation and decode metrics for GPT-2 and LLaMA shapes, no tensors left behind', async () => {
    for (const preset of ['small', 'tiny-chat'] as const) {
      const before = tf.memory().numTensors;
      const r = await foundationSuite(toy(preset), opts);
      expect(tf.memory().numTensors).toBe(before);
      for (const key of ['train_tokens_per_s', 'train_step_s', 'generate_tokens_per_s', 'decode_ms_pos10', 'decode_ms_pos120', 'train_peak_bytes']) {
        expect(r.metrics[key], `${preset} ${key}`).toBeGreaterThan(0);
        expect(Number.isFinite(r.metrics[key]!), key).toBe(true);
      }
      expect(r.metrics.train_matmul_share).toBeGreaterThan(0);
      expect(r.metrics.train_matmul_share).toBeLessThanOrEqual(1);
      expect(r.profile.kernels.some((k) => k.name === 'BatchMatMul' || k.name === '_FusedMatMul')).toBe(true);
      const table = formatTable(describeConfig(toy(preset)), r.rows);
      expect(table).toMatch(/fwd\+bwd tokens\/s/);
      expect(table).toMatch(/decode step @ pos 120/);
    }
  });

  it('foundation with switchOff: the timed steps alternate with the switch at 0, both reported, the env restored', async () => {
    delete process.env.RLHF_BENCH_TEST_SWITCH;
    const r = await foundationSuite(toy('small'), { ...opts, skipGeneration: true, steps: 2, switchOff: 'RLHF_BENCH_TEST_SWITCH' });
    expect(r.metrics.train_step_switched_off_s).toBeGreaterThan(0);
    expect(r.metrics.train_step_switched_off_cpu_s).toBeGreaterThanOrEqual(0);
    expect(r.rows.some((row) => row.metric === 'fwd+bwd step, RLHF_BENCH_TEST_SWITCH=0')).toBe(true);
    expect(process.env.RLHF_BENCH_TEST_SWITCH).toBeUndefined();
  });

  it('sft: a full step (loss, clipping, AdamW), whole or in micro-batches, reports its parts and leaks nothing', async () => {
    const before = tf.memory().numTensors;
    for (const microBatch of [undefined, 1]) {
      const r = await sftSuite(toy('small'), { ...opts, microBatch });
      expect(r.metrics.sft_tokens_per_s).toBeGreaterThan(0);
      expect(r.metrics.sft_optimizer_s).toBeGreaterThanOrEqual(0);
      expect(r.metrics.sft_optimizer_s).toBeLessThan(r.metrics.sft_step_s!);
      expect(r.rows.find((x) => x.metric === 'SFT tokens/s')!.note).toMatch(microBatch ? /1 row per micro-batch/ : /^B=2 T=16$/);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rm: pairs/s with and without gradient accumulation, no tensors left behind', async () => {
    const config = benchConfig('opt-125m', { layers: 1, width: 32, heads: 2, vocab: 97 });
    expect(config.modelType).toBe('opt');
    const before = tf.memory().numTensors;
    const whole = await rmSuite(config, { ...opts, batch: 4, seq: 12 });
    const micro = await rmSuite(config, { ...opts, batch: 4, seq: 12, microBatch: 1 });
    expect(tf.memory().numTensors).toBe(before);
    for (const r of [whole, micro]) {
      expect(r.metrics.rm_pairs_per_s).toBeGreaterThan(0);
      expect(r.metrics.rm_tokens_per_s! / r.metrics.rm_pairs_per_s!).toBeGreaterThan(2 * 6); // two sequences of ≥ T/2 per pair
      expect(r.metrics.rm_tokens_per_s! / r.metrics.rm_pairs_per_s!).toBeLessThanOrEqual(2 * 12);
    }
    expect(micro.rows.find((x) => x.metric === 'RM pairs/s')!.note).toMatch(/1 per micro-batch/);
    await expect(rmSuite(config, { ...opts, batch: 4, seq: 12, microBatch: 3 })).rejects.toThrow(/--micro-batch 3 must divide/);
  });

  it('ppo: experience and update throughput with full weights and with LoRA, no tensors left behind', async () => {
    for (const loraRank of [0, 2]) {
      const before = tf.memory().numTensors;
      const r = await ppoSuite(toy('small'), { ...opts, genBatch: 4, promptLen: 5, newTokens: 6, trainBatch: 2, loraRank });
      expect(tf.memory().numTensors, `lora ${loraRank}`).toBe(before);
      for (const key of ['ppo_experience_tokens_per_s', 'ppo_generate_tokens_per_s', 'ppo_train_tokens_per_s', 'ppo_update_s', 'ppo_peak_bytes']) {
        expect(r.metrics[key], `lora ${loraRank} ${key}`).toBeGreaterThan(0);
      }
      // the rollout is part of experience making, so it is at least as fast per token
      expect(r.metrics.ppo_generate_tokens_per_s).toBeGreaterThanOrEqual(r.metrics.ppo_experience_tokens_per_s!);
      expect(r.rows.find((x) => x.metric === 'PPO train tokens/s')!.note).toMatch(/B=2 T=11/);
      expect(r.metrics.ppo_lora_rank).toBe(loraRank);
    }
  });

  it('--frozen-dtype bf16: the frozen models are built packed (half the bytes of their float32 twins), the suites still run', async () => {
    const before = tf.memory().numTensors;
    for (const loraRank of [0, 2]) {
      const f32 = await ppoSuite(toy('small'), { ...opts, genBatch: 2, promptLen: 4, newTokens: 3, trainBatch: 2, loraRank });
      const bf16 = await ppoSuite(toy('small'), { ...opts, genBatch: 2, promptLen: 4, newTokens: 3, trainBatch: 2, loraRank, frozenDtype: 'bf16' });
      const note = (r: typeof f32) => r.rows.find((x) => x.metric === 'parameters per model')!.note!;
      expect(note(f32)).toMatch(/frozen weights float32/);
      expect(note(bf16)).toMatch(/frozen weights bf16/);
      // the same parameter count, packed or not
      expect(bf16.rows[0]!.value).toBeCloseTo(f32.rows[0]!.value, 6);
      expect(bf16.metrics.ppo_peak_bytes).toBeLessThan(f32.metrics.ppo_peak_bytes!);
      expect(bf16.metrics.ppo_train_tokens_per_s).toBeGreaterThan(0);
    }
    const sft = await sftSuite(toy('small'), { ...opts, loraRank: 2, frozenDtype: 'bf16' });
    expect(sft.rows[0]!.note).toMatch(/frozen weights bf16: .*LoRA/);
    expect(tf.memory().numTensors).toBe(before);
    await expect(sftSuite(toy('small'), { ...opts, frozenDtype: 'bf16' })).rejects.toThrow(/full-weight SFT has no frozen weights/);
    await expect(rmSuite(benchConfig('opt-125m', { layers: 1, width: 32, heads: 2, vocab: 97 }), { ...opts, frozenDtype: 'int8' })).rejects.toThrow(/nothing is frozen/);
  });

  it('fromConfig packing as it draws gives the weights packFrozen gives the float32 model', () => {
    const config = toy('tiny-chat');
    const direct = DecoderModel.fromConfig(config, 3, 'bf16');
    const later = DecoderModel.fromConfig(config, 3);
    later.packFrozen('bf16');
    expect([...direct.packed.keys()].sort()).toEqual([...later.packed.keys()].sort());
    expect(direct.packed.size).toBeGreaterThan(0);
    for (const [name, w] of direct.packed) expect(Array.from(w.data.dataSync()), name).toEqual(Array.from(later.packed.get(name)!.data.dataSync()));
    expect(direct.namedParameters().map(([n]) => n)).toEqual(later.namedParameters().map(([n]) => n));
    direct.dispose();
    later.dispose();
  });

  it('a width the heads do not divide is refused naming the flags', () => {
    expect(() => benchConfig('gpt2-124m', { width: 32, heads: 3 })).toThrow(/--width 32 is not divisible by --heads 3/);
    expect(() => benchConfig('gpt2-124m', { width: 100 })).toThrow(/--width 100 is not divisible by gpt2-124m's 12 heads/);
    expect(benchConfig('gpt2-124m', { width: 36, heads: 3 }).headDim).toBe(12);
  });
});
