/**
 * `dpo`: DPO training steps in pairs/s, run through the trainer's own functions (referenceRowLogps, dpoObjective,
 * Optimization) on models built from config: o.batch pairs per optimizer step (o.microBatch per forward), each a
 * shared prompt of T/4 tokens and two answers that bring each sequence to between T/2 and T tokens. Two variants:
 *   with a reference   a second, frozen model scores both sides first (no gradient), then the policy's step (sigmoid)
 *   reference-free     the policy's step alone (simpo), i.e. what --precompute_ref_log_probs or simpo/orpo cost
 * The difference is the reference forward's share of a step. With o.loraRank > 0 the policy trains a LoRA adapter and
 * the reference is the same weights with the adapter off (as train_dpo --lora_rank), so no second copy is held.
 */
import { Rng } from '../engine/rng.js';
import { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { policyParameters } from '../dpo/trainer.js';
import type { ModelConfig } from '../models/config.js';
import { collateDpoPairs, type DpoPair } from '../dpo/data.js';
import { DPO_LOSS_DEFAULTS, type DpoLossType } from '../dpo/losses.js';
import { dpoObjective, referenceRowLogps, type ReferenceSource } from '../dpo/objective.js';
import { medianTiming, timeIt, type Timing } from './measure.js';
import { formatProfile, profileCall } from './profile.js';
import type { Row } from './report.js';
import { frozenFormat, heapRow, paramCount, type SuiteOptions, type SuiteResult } from './suites.js';
import { benchOptimization, randomIds } from './workloads.js';

const MiB = 2 ** 20;

function randomPair(rng: Rng, T: number, V: number): DpoPair {
  const P = Math.max(1, Math.floor(T / 4));
  const prompt = randomIds(rng, 1, P, V)[0]!;
  const answer = () => randomIds(rng, 1, Math.ceil(T / 2) - P + rng.int(T - Math.ceil(T / 2) + 1), V)[0]!;
  return { chosen: { prompt, answer: answer() }, rejected: { prompt, answer: answer() } };
}

export async function dpoSuite(config: ModelConfig, o: SuiteOptions): Promise<SuiteResult> {
  const rng = new Rng(5);
  const micro = Math.min(o.microBatch ?? o.batch, o.batch);
  if (o.batch % micro !== 0) throw new Error(`--micro-batch ${micro} must divide the batch of ${o.batch} pairs`);
  const lora = (o.loraRank ?? 0) > 0;
  // Frozen: the base under the adapter (LoRA), or the separate reference (full weights).
  const policy = DecoderModel.fromConfig(config, 0, lora ? frozenFormat(o) : undefined);
  if (lora) policy.lora = LoraAdapter.create(policy.spec, { r: o.loraRank!, alpha: 16, dropout: 0, targetModules: DEFAULT_LORA_TARGETS[config.modelType] ?? 'all-linear' }, 1);
  const refModel = lora ? null : DecoderModel.fromConfig(config, 0, frozenFormat(o));
  const opt = benchOptimization(policyParameters(policy), lora ? 5e-5 : 5e-7, { accumulationSteps: o.batch / micro });
  const pairs = Array.from({ length: o.batch }, () => randomPair(rng, o.seq, config.vocabSize));
  const batches = Array.from({ length: o.batch / micro }, (_, i) => collateDpoPairs(pairs.slice(i * micro, (i + 1) * micro), 0));
  const realTokens = batches.reduce((s, b) => s + b.sequences.tokens, 0);
  const answerTokens = batches.reduce((s, b) => s + b.items.reduce((n, p) => n + p.chosen.answer.length + p.rejected.answer.length, 0), 0);
  const shape = `${o.batch} pairs, T≤${o.seq}${micro < o.batch ? `, ${micro} per micro-batch` : ''}${lora ? `, LoRA r=${o.loraRank}` : ''}`;
  const stepOf = (ref: ReferenceSource, lossType: DpoLossType) => () => {
    for (const b of batches) {
      const refRows = referenceRowLogps(ref, b);
      opt.backward((aux) => dpoObjective(policy, b, refRows, { ...DPO_LOSS_DEFAULTS, lossType, beta: lossType === 'simpo' ? 2 : 0.1 }, aux, true));
    }
    return opt.step();
  };
  const variants = [
    { name: 'with reference', key: 'ref', step: stepOf(refModel ? { kind: 'model', model: refModel } : { kind: 'adapter_off', model: policy }, 'sigmoid') },
    { name: 'reference-free', key: 'noref', step: stepOf({ kind: 'none' }, 'simpo') },
  ];
  try {
    const rows: Row[] = [{ metric: 'parameters', value: paramCount(policy) / 1e6, unit: 'M', note: lora ? 'policy; the reference is the same weights, adapter off' : 'policy; the reference is a second copy' }];
    const metrics: Record<string, number> = {};
    let firstProfile = null;
    for (const v of variants) {
      o.log(`DPO step ${v.name} (${shape}): warm-up (profiled) …`);
      const profile = await profileCall(v.step);
      firstProfile ??= profile;
      if (o.profileTop > 0) o.log(formatProfile(`profile of one DPO step ${v.name} (${shape})`, profile, o.profileTop));
      const times: Timing[] = [];
      for (let i = 0; i < o.steps; i++) {
        times.push(timeIt(v.step));
        o.log(`  step ${i + 1}/${o.steps}: ${(times[i]!.wallMs / 1000).toFixed(2)} s`);
      }
      const t = medianTiming(times);
      const s = t.wallMs / 1000;
      rows.push(
        { metric: `DPO pairs/s, ${v.name}`, value: o.batch / s, unit: 'pairs/s', note: `${shape}; ${realTokens} real tokens, ${answerTokens} scored` },
        { metric: `DPO step, ${v.name}`, value: s, unit: 's', note: `median wall; CPU ${(t.cpuMs / 1000).toFixed(2)} s` },
        { metric: `DPO peak tensor memory, ${v.name}`, value: profile.peakBytes / MiB, unit: 'MiB', note: 'max tf.memory().numBytes' },
      );
      Object.assign(metrics, { [`dpo_${v.key}_pairs_per_s`]: o.batch / s, [`dpo_${v.key}_step_s`]: s, [`dpo_${v.key}_peak_bytes`]: profile.peakBytes });
    }
    rows.push(...heapRow());
    return { rows, profile: firstProfile!, metrics };
  } finally {
    opt.dispose();
    policy.dispose();
    refModel?.dispose();
  }
}
