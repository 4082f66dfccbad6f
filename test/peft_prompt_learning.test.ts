/**
 * PEFT prefix tuning and prompt tuning adapters against peft 0.21 (test/fixtures/hf/<arch>/{prefix,prompt}): logits
 * of the parent's left-padded batch within 1e-4 (prompt tuning: with the 4 virtual positions first, as peft returns
 * them) and 8 greedy tokens after row 0, equal with and without the KV cache, on cpu and wasm.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { generate } from '../src/models/generation.js';
import { FIXTURES, relErr } from './helpers/fixtures.js';
import { readSafetensors } from '../src/hub/safetensors.js';
import { causalLmLossWithAdapter } from '../src/models/virtual_tokens.js';

const ARCHS = ['gpt2', 'llama', 'qwen2'] as const;
const KINDS = ['prefix', 'prompt'] as const;
const cases = ['cpu', 'wasm'].flatMap((b) => ARCHS.flatMap((a) => KINDS.map((k) => [b, a, k] as const)));

describe.each(cases)('%s backend: %s %s tuning matches peft', (backend, arch, kind) => {
  const dir = join(FIXTURES, 'hf', arch);
  const exp = readSafetensors(join(dir, kind, 'expected.safetensors')).tensors;
  const ids = exp.get('input_ids')!;
  const mask = exp.get('attention_mask')!;
  const [B, T] = ids.shape as [number, number];
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  it('logits of the padded batch within 1e-4 (every position)', () => {
    const { model } = loadPretrained(dir, { adapter: join(dir, kind), promptLearning: true });
    const logits = tf.tidy(() => {
      const out = model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32'), keepVirtual: true });
      return model.logits(out.hidden);
    });
    const want = exp.get('logits')!;
    expect(logits.shape).toEqual(want.shape);
    expect(relErr(logits.dataSync(), want.data)).toBeLessThan(1e-4);
    logits.dispose();
    // The KV cache starts with the virtual positions (prefix: the learned keys/values; prompt: the virtual inputs').
    const P = model.virtualTokens!.numVirtualTokens;
    tf.tidy(() => {
      const { cache } = model.forward(tf.tensor2d(ids.data, [B, T], 'int32'), { attentionMask: tf.tensor2d(mask.data, [B, T], 'int32'), useCache: true });
      expect(cache!.keys[0]!.shape).toEqual([B, model.config.numKvHeads, P + T, model.config.headDim]);
      if (kind === 'prefix') {
        const first = tf.slice(cache!.keys[1]!, [0, 0, 0, 0], [1, -1, P, -1]);
        expect(relErr(first.dataSync(), model.virtualTokens!.prefixCache(1)!.keys[1]!.dataSync())).toBe(0);
      }
    });
    model.dispose();
  });

  it('greedy tokens after row 0 equal peft, with and without the KV cache', () => {
    const { model } = loadPretrained(dir, { adapter: join(dir, kind), promptLearning: true });
    const prompt = [Array.from(ids.data.slice(0, T))];
    const want = Array.from(exp.get('greedy_ids')!.data);
    for (const useCache of [true, false]) {
      const out = generate(model, prompt, null, { maxNewTokens: want.length - T, eosTokenId: null, useCache });
      expect(out.sequences[0], `useCache ${useCache}`).toEqual(want);
    }
    // Left-padded by 3: positions come from the mask, so the padded prompt generates what it generates alone.
    const padded = [...Array.from(ids.data.slice(T, T + 3)), ...prompt[0]!];
    const out = generate(model, [padded], [[0, 0, 0, ...Array(T).fill(1)]], { maxNewTokens: 4, eosTokenId: null });
    expect(out.sequences[0]!.slice(T + 3)).toEqual(want.slice(T, T + 4));
    model.dispose();
  });
});

/** Mean next-token cross-entropy of logits [B, S, V] against labels [B, S] (−100 ignored), in float64. */
function referenceLoss(logits: Float32Array, labels: number[][], V: number): number {
  let sum = 0;
  let n = 0;
  labels.forEach((row, b) => {
    for (let t = 0; t + 1 < row.length; t++) {
      const y = row[t + 1]!;
      if (y === -100) continue;
      const off = (b * row.length + t) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[off + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[off + v]! - max);
      sum += max + Math.log(z) - logits[off + y]!;
      n += 1;
    }
  });
  return sum / n;
}

describe.each(ARCHS.flatMap((a) => KINDS.map((k) => [a, k] as const)))('cpu backend: %s %s tuning loss and gradient', (arch, kind) => {
  const dir = join(FIXTURES, 'hf', arch);
  const exp = readSafetensors(join(dir, kind, 'expected.safetensors')).tensors;
  const ids = exp.get('input_ids')!;
  const mask = exp.get('attention_mask')!;
  const [B, T] = ids.shape as [number, number];
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('loss of the padded batch equals the cross-entropy of peft\'s logits (1e-5); adapter gradient matches finite differences', () => {
    const { model } = loadPretrained(dir, { adapter: join(dir, kind), promptLearning: true });
    const P = kind === 'prompt' ? model.virtualTokens!.numVirtualTokens : 0;
    const labels = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (mask.data[b * T + t] ? ids.data[b * T + t]! : -100)));
    // peft labels prompt tuning's virtual positions −100 in front of the caller's labels.
    const want = referenceLoss(exp.get('logits')!.data as Float32Array, labels.map((r) => [...Array(P).fill(-100), ...r]), exp.get('logits')!.shape[2]!);
    const x = tf.tensor2d(ids.data, [B, T], 'int32');
    const am = tf.tensor2d(mask.data, [B, T], 'int32');
    const y = tf.tensor2d(labels, [B, T], 'int32');
    const loss = () => causalLmLossWithAdapter(model, x, y, { attentionMask: am }) as tf.Scalar;
    expect(Math.abs(loss().dataSync()[0]! - want) / want).toBeLessThan(1e-5);

    // Directional derivative, autograd vs central differences, along the gradient's own direction plus a fixed random
    // one (the gradient's share keeps the difference well above float32 noise).
    const table = model.virtualTokens!.trainableVariables()[0]!;
    const { grads } = tf.variableGrads(loss, [table]);
    const g = grads[table.name]!;
    const r = tf.randomNormal(table.shape, 0, 1, 'float32', 7);
    const d = tf.add(tf.div(g, tf.norm(g)), tf.div(r, tf.norm(r)));
    const analytic = tf.sum(tf.mul(g, d)).dataSync()[0]!;
    const eps = 1e-2;
    const orig = table.clone();
    table.assign(tf.add(orig, tf.mul(d, eps)));
    const up = loss().dataSync()[0]!;
    table.assign(tf.sub(orig, tf.mul(d, eps)));
    const down = loss().dataSync()[0]!;
    table.assign(orig);
    expect(Math.abs((up - down) / (2 * eps) - analytic) / Math.abs(analytic)).toBeLessThan(1e-3);
    model.dispose();
  });
});

describe('bad adapter files', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  it('are refused with the file and field named', () => {
    const dir = join(FIXTURES, 'hf', 'gpt2');
    const bad = (kind: string, edit: Record<string, unknown>) => {
      const tmp = mkdtempSync(join(tmpdir(), 'peft-bad-'));
      cpSync(join(dir, kind), tmp, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(tmp, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(tmp, 'adapter_config.json'), JSON.stringify({ ...cfg, ...edit }));
      return () => loadPretrained(dir, { adapter: tmp, promptLearning: true });
    };
    expect(bad('prefix', { num_layers: 3 })).toThrow(/adapter_config\.json: num_layers is 3 but the model has 2 layers/);
    expect(bad('prefix', { num_virtual_tokens: 6 })).toThrow(/prompt_embeddings is \[5,256\] but 6 virtual tokens/);
    expect(bad('prompt', { token_dim: 32 })).toThrow(/token_dim is 32 but the model's token embeddings are 64 wide/);
    expect(bad('prompt', { num_virtual_tokens: 0 })).toThrow(/num_virtual_tokens must be a positive integer/);
    expect(bad('prompt', { peft_type: 'IA3' })).toThrow(/peft_type "IA3" is not supported/);
    expect(bad('prefix', { task_type: 'SEQ_2_SEQ_LM' })).toThrow(/task_type "SEQ_2_SEQ_LM" is not supported/);
  });
});

describe('inference --adapter / --lora with --input_ids', () => {
  const REPO = join(FIXTURES, '..', '..');
  const run = (args: string[]) => spawnSync('npx', ['tsx', join(REPO, 'src/cli/inference.ts'), ...args], { cwd: REPO, encoding: 'utf8' });
  it.each([['gpt2', 'prefix', '--adapter'], ['llama', 'prompt', '--lora']] as const)('%s %s tuning (%s) reproduces peft\'s greedy ids', (arch, kind, flag) => {
    const dir = join(FIXTURES, 'hf', arch);
    const exp = readSafetensors(join(dir, kind, 'expected.safetensors')).tensors;
    const prompt = Array.from(exp.get('input_ids')!.data.slice(0, 12));
    const want = Array.from(exp.get('greedy_ids')!.data);
    const r = run(['--pretrain', dir, flag, join(dir, kind), '--input_ids', prompt.join(','), '--max_new_tokens', '8', '--json', '--backend', 'cpu']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { input_ids: number[]; output_ids: number[] };
    expect(out.input_ids).toEqual(prompt);
    expect(out.output_ids).toEqual(want); // no EOS among them, so all 8 tokens
  }, 60_000);

  it('refuses --input_ids together with --input', () => {
    const a = run(['--input', 'hi', '--input_ids', '1,2']);
    expect(a.status).not.toBe(0);
    expect(a.stderr).toMatch(/--input_ids gives the exact prompt ids/);
  }, 60_000);
});
