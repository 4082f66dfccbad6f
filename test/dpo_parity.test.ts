/**
 * DPO against TRL on the fixture checkpoints (test/fixtures/hf/<family>/dpo, see test/fixtures/README.md): every
 * sequence's summed completion log-prob under policy and reference within 1e-5 relative, and the gradient of the
 * sigmoid (DPO) loss for every policy parameter within 1e-4, through the trainer's own objective.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { completionLogProbArrays } from '../src/models/sequence_logprobs.js';
import { collateDpoPairs, type DpoPair } from '../src/dpo/data.js';
import { dpoObjective } from '../src/dpo/objective.js';
import { DPO_LOSS_DEFAULTS } from '../src/dpo/losses.js';
import { FIXTURES, relErr } from './helpers/fixtures.js';
import { readSafetensors } from '../src/hub/safetensors.js';

interface DpoFixture {
  beta: number;
  pairs: { prompt_ids: number[]; chosen_ids: number[]; rejected_ids: number[] }[];
  logps: { policy_chosen: number[]; policy_rejected: number[]; ref_chosen: number[]; ref_rejected: number[]; chosen_tokens: number[]; rejected_tokens: number[] };
  losses: Record<string, number>;
  metrics: Record<string, number>;
}

beforeAll(async () => {
  await useTestBackend('wasm');
});

describe.each(['gpt2', 'llama', 'qwen2'])('%s: DPO parity with TRL', (family) => {
  const dir = join(FIXTURES, 'hf', family);
  const e = JSON.parse(readFileSync(join(dir, 'dpo', 'expected.json'), 'utf8')) as DpoFixture;
  const pairs: DpoPair[] = e.pairs.map((p) => ({ chosen: { prompt: p.prompt_ids, answer: p.chosen_ids }, rejected: { prompt: p.prompt_ids, answer: p.rejected_ids } }));
  const batch = collateDpoPairs(pairs, 0);

  it('summed completion log-probs of policy and reference within 1e-5', () => {
    for (const [sub, keys] of [['', ['policy_chosen', 'policy_rejected']], ['dpo/ref', ['ref_chosen', 'ref_rejected']]] as const) {
      const { model } = loadPretrained(join(dir, sub));
      const r = completionLogProbArrays(model, batch.sequences);
      const want = [...e.logps[keys[0]], ...e.logps[keys[1]]];
      r.sums.forEach((x, i) => expect(Math.abs(x - want[i]!) / Math.abs(want[i]!), `${sub || 'policy'} row ${i}`).toBeLessThan(1e-5));
      expect(r.counts).toEqual([...e.logps.chosen_tokens, ...e.logps.rejected_tokens]);
      model.dispose();
    }
  });

  it('the DPO loss, its metrics and the gradient of every parameter (1e-4)', () => {
    const { model } = loadPretrained(dir);
    const refRows = [...e.logps.ref_chosen, ...e.logps.ref_rejected];
    const vars = model.namedParameters();
    const aux: Record<string, tf.Tensor> = {};
    const { value, grads } = tf.variableGrads(() => {
      const loss = dpoObjective(model, batch, refRows, { ...DPO_LOSS_DEFAULTS, beta: e.beta, lossType: 'sigmoid' }, aux, false);
      for (const t of Object.values(aux)) tf.keep(t);
      return loss;
    }, vars.map(([, v]) => v));
    expect(Math.abs(value.dataSync()[0]! - e.losses.sigmoid!) / e.losses.sigmoid!).toBeLessThan(1e-5);
    // A reward is β times a difference of two close log-probs: what 1e-5-relative log-probs allow, absolutely
    // (test/dpo_losses.test.ts checks the metrics within 1e-5 relative from the fixture's own log-probs).
    const allowed = 2 * 1e-5 * e.beta * Math.max(...Object.values(e.logps).flat().map(Math.abs));
    for (const k of ['rewards/chosen', 'rewards/rejected', 'rewards/margins']) {
      expect(Math.abs(aux[k]!.dataSync()[0]! - e.metrics[k]!), k).toBeLessThan(allowed);
    }
    expect(aux['rewards/accuracies']!.dataSync()[0]).toBe(e.metrics['rewards/accuracies']);
    const exp = readSafetensors(join(dir, 'dpo', 'expected.safetensors')).tensors;
    for (const [name, v] of vars) {
      const want = exp.get(`grad.${name}`);
      expect(want, `fixture has grad.${name}`).toBeDefined();
      const g = grads[v.name]!.dataSync();
      if (Math.hypot(...want!.data) < 1e-6) expect(Math.hypot(...g), name).toBeLessThan(1e-5); // a gradient softmax cancels
      else expect(relErr(g, want!.data), name).toBeLessThan(1e-4);
    }
    tf.dispose([value, ...Object.values(grads), ...Object.values(aux)]);
    model.dispose();
  });
});

describe.each(['opt', 'bloom', 'gpt2', 'llama'])('%s: completion log-probs agree with the full logits', (family) => {
  it('sums of log-softmax at the answer tokens, and the mean logit (TRL logits/*), within 1e-5', () => {
    const { model } = loadPretrained(join(FIXTURES, 'hf', family));
    const pairs: DpoPair[] = [
      { chosen: { prompt: [3, 4, 5, 6], answer: [7, 8] }, rejected: { prompt: [3, 4, 5, 6], answer: [9, 10, 11, 12, 13] } },
      { chosen: { prompt: [20, 21], answer: [22, 23, 24] }, rejected: { prompt: [20, 21], answer: [25] } },
    ];
    const b = collateDpoPairs(pairs, 1).sequences;
    const got = completionLogProbArrays(model, b);
    const [R, T] = [b.inputIds.length, b.inputIds[0]!.length];
    const { logp, logits } = tf.tidy(() => {
      const ids = tf.tensor2d(b.inputIds, [R, T], 'int32');
      const mask = tf.tensor2d(b.attentionMask, [R, T], 'int32');
      const z = model.logits(model.forward(ids, { attentionMask: mask }).hidden); // (R, T, V)
      return { logp: tf.logSoftmax(z, -1).arraySync() as number[][][], logits: z.arraySync() as number[][][] };
    });
    for (let r = 0; r < R; r++) {
      let sum = 0;
      let lsum = 0;
      let n = 0;
      for (let t = 1; t < T; t++) {
        if (!b.completionMask[r]![t]) continue;
        sum += logp[r]![t - 1]![b.inputIds[r]![t]!]!;
        lsum += logits[r]![t - 1]!.reduce((a, x) => a + x, 0) / logits[r]![t - 1]!.length;
        n++;
      }
      expect(Math.abs(got.sums[r]! - sum) / Math.abs(sum), `row ${r}`).toBeLessThan(1e-5);
      expect(Math.abs(got.meanLogits[r]! - lsum / n), `row ${r} mean logit`).toBeLessThan(1e-5 * Math.max(1, Math.abs(lsum / n)));
    }
    model.dispose();
  });
});
