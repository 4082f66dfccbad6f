/**
 * RewardModel: the reward is the value at the last real token (or the mean over real tokens), so padding cannot
 * change it; what training updates; saving as an HF directory (full or LoRA adapter) and loading it back by path.
 */
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../src/engine/tf.js';
import { useTestBackend } from './helpers/test_backend.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { readSafetensors } from '../src/hub/safetensors.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { LoraAdapter, DEFAULT_LORA_TARGETS } from '../src/models/lora.js';
import { ValueHead } from '../src/models/value_head.js';
import { answerMaskRows } from '../src/models/value_model.js';
import { readRewardReduction } from '../src/rewards/reward_model.js';
import { saveCheckpoint } from '../src/trainer/stage_checkpoint.js';
import { collatePairs, loadRewardModel, logSigLoss, pairBatchLoss, readRewardMeta, reduceValues, RewardModel, rewardConfigExtra, type PairBatch } from '../src/reward/index.js';
import { ARCHS, fixtureDir, type Arch } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'reward-model-'));

function freshRewardModel(arch: Arch, reduction: 'last' | 'mean' | 'answer_sum' = 'last'): RewardModel {
  const { model } = loadPretrained(fixtureDir(arch));
  return new RewardModel(model, ValueHead.create(model.config.hiddenSize, 7), reduction);
}

describe.each(['cpu', 'wasm'] as const)('reduceValues on %s', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('last: the value at the last 1 of the mask, whatever the padding side; mean and sum: over real tokens', () => {
    const values = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
    const mask = [[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]];
    const run = (r: 'last' | 'mean' | 'sum') => tf.tidy(() => Array.from(reduceValues(tf.tensor2d(values), tf.tensor2d(mask, undefined, 'int32'), r).dataSync()));
    expect(run('last')).toEqual([2, 8, 11]);
    const mean = run('mean');
    [1.5, 6.5, 10.5].forEach((m, i) => expect(mean[i]!).toBeCloseTo(m, 6));
    expect(run('sum')).toEqual([3, 26, 21]);
  });

  it('a one-position input (a one-token text) scores its only value', () => {
    const got = tf.tidy(() => Array.from(reduceValues(tf.tensor2d([[1.5], [-2]]), tf.tensor2d([[1], [1]], undefined, 'int32'), 'last').dataSync()));
    expect(got).toEqual([1.5, -2]);
  });

  it('answer_sum and answer_mean: over the positions where both the mask and the answer mask are 1', () => {
    const values = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]];
    const mask = [[1, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 0, 0, 0]];
    // row 0: right-padded, prompt 2 tokens; row 1: left-padded, answer = the last 2; row 2: no answer token at all
    const answer = [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]];
    const run = (r: 'answer_sum' | 'answer_mean') =>
      tf.tidy(() => Array.from(reduceValues(tf.tensor2d(values), tf.tensor2d(mask, undefined, 'int32'), r, undefined, null, tf.tensor2d(answer, undefined, 'int32')).dataSync()));
    expect(run('answer_sum')).toEqual([3 + 4, 9 + 10, 0]); // the padded 5 of row 0 is outside the mask
    const mean = run('answer_mean');
    [3.5, 9.5, 0].forEach((m, i) => expect(mean[i]!).toBeCloseTo(m, 6));
    expect(() => tf.tidy(() => reduceValues(tf.tensor2d(values), tf.tensor2d(mask, undefined, 'int32'), 'answer_sum'))).toThrow(/answer mask/);
  });
});

describe('answerMaskRows', () => {
  it('1 from the prompt end to the sequence end of each right-padded row', () => {
    expect(answerMaskRows([2, 0, 3], [4, 2, 3], 5)).toEqual([[0, 0, 1, 1, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]);
  });
});

describe.each(ARCHS)('%s reward model', (arch) => {
  beforeAll(async () => {
    await useTestBackend('cpu');
  });

  it('a right-padded copy of a sequence gets the same reward as the unpadded one', () => {
    const rm = freshRewardModel(arch);
    const seq = [11, 25, 37, 49, 53, 61];
    const longer = [17, 19, 23, 29, 31, 37, 41, 43, 47];
    const alone = rm.scoreArrays([seq], [seq.map(() => 1)])[0]!;
    const pad = 0;
    const padded = [...seq, pad, pad, pad];
    const batch = rm.scoreArrays([longer, padded], [longer.map(() => 1), [...seq.map(() => 1), 0, 0, 0]]);
    expect(Math.abs(batch[1]! - alone)).toBeLessThan(1e-5);
    // and the reward really is the last real token's value: a different last token changes it
    const changed = rm.scoreArrays([[...seq.slice(0, -1), 99]], [seq.map(() => 1)])[0]!;
    expect(Math.abs(changed - alone)).toBeGreaterThan(1e-6);
    rm.dispose();
  });

  it('mean reduction averages the values of the real tokens only', () => {
    const rm = freshRewardModel(arch, 'mean');
    const seq = [5, 6, 7, 8, 9];
    const values = tf.tidy(() => Array.from(rm.values(tf.tensor2d([seq], undefined, 'int32'), tf.tensor2d([seq.map(() => 1)], undefined, 'int32')).dataSync()));
    const expected = values.reduce((a, b) => a + b, 0) / values.length;
    const [padded] = rm.scoreArrays([[...seq, 0, 0]], [[1, 1, 1, 1, 1, 0, 0]]);
    expect(padded!).toBeCloseTo(expected, 5);
    rm.dispose();
  });
});

describe('pairs sharing answers', () => {
  beforeAll(async () => {
    await useTestBackend('cpu');
  });

  it('a batch scoring each distinct answer once has the loss and gradients of one scoring each pair\'s two sides', () => {
    const rm = freshRewardModel('llama', 'answer_sum');
    // one prompt [7, 8], three ranked answers: every pair of them
    const [a, b, c] = [[7, 8, 21, 22, 2], [7, 8, 31, 2], [7, 8, 41, 42, 43, 2]];
    const side = (x: number[]) => x;
    const pairs = [[a, b], [a, c], [b, c]].map(([ch, rj]) => ({ chosen: side(ch!), rejected: side(rj!), chosenPromptLen: 2, rejectedPromptLen: 2 }));
    const shared = collatePairs(pairs, 0);
    expect(shared.inputIds.length).toBe(3);
    // the same pairs as six rows: each pair's two sides scored separately
    const rows = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
    const width = Math.max(...rows.map((r) => r.length));
    const full: PairBatch = {
      inputIds: rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(0)]),
      attentionMask: rows.map((r) => [...r.map(() => 1), ...new Array<number>(width - r.length).fill(0)]),
      answerMask: rows.map((r) => [0, 0, ...r.slice(2).map(() => 1), ...new Array<number>(width - r.length).fill(0)]),
      chosenRows: [0, 1, 2], rejectedRows: [3, 4, 5], pairs: 3, tokens: rows.reduce((n, r) => n + r.length, 0),
    };
    const params = rm.trainableParameters().map(([, v]) => v);
    const run = (batch: PairBatch) => tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => pairBatchLoss(rm, logSigLoss, batch, {}, false), params);
      return { loss: value.dataSync()[0]!, grads: Object.values(grads).map((g) => Float32Array.from(g.dataSync())) };
    });
    const [x, y] = [run(shared), run(full)];
    expect(Math.abs(x.loss - y.loss) / Math.abs(y.loss)).toBeLessThan(1e-6);
    const norm = (vs: Float32Array[]) => Math.sqrt(vs.reduce((s, v) => s + v.reduce((t, e) => t + e * e, 0), 0));
    const diff = norm(x.grads.map((g, i) => g.map((e, k) => e - y.grads[i]![k]!)));
    expect(diff / norm(y.grads)).toBeLessThan(1e-6);
    rm.dispose();
  });
});

describe('what training updates', () => {
  it('every backbone weight plus the head; with LoRA only the adapter plus the head', () => {
    const rm = freshRewardModel('gpt2');
    const full = rm.trainableParameters().map(([n]) => n);
    expect(full).toContain('value_head.weight');
    expect(full).toContain('transformer.h.0.attn.c_attn.weight');
    expect(full.length).toBe(rm.backbone.params.size + 1); // a new head is transformers' score: no bias
    rm.backbone.lora = LoraAdapter.create(rm.backbone.spec, { r: 2, alpha: 4, dropout: 0, targetModules: DEFAULT_LORA_TARGETS.gpt2! }, 1);
    const lora = rm.trainableParameters().map(([n]) => n);
    expect(lora).toEqual([
      'transformer.h.0.attn.c_attn.lora_A.weight', 'transformer.h.0.attn.c_attn.lora_B.weight',
      'transformer.h.1.attn.c_attn.lora_A.weight', 'transformer.h.1.attn.c_attn.lora_B.weight',
      'value_head.weight',
    ]);
    rm.dispose();
  });
});

describe('saved reward models load by path alone', () => {
  const ids = [[3, 14, 15, 92, 65, 35], [89, 79, 32, 0, 0, 0]];
  const mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]];

  it('full weights: OPTForSequenceClassification layout (score.weight, no lm_head), rlhf marker in config.json, identical rewards', async () => {
    const rm = freshRewardModel('opt', 'mean');
    const before = rm.scoreArrays(ids, mask);
    const dir = join(tmp, 'full');
    await saveCheckpoint(dir, { model: rm.backbone, tokenizer: await Tokenizer.fromDir(fixtureDir('opt')), valueHead: rm.valueHead, configExtra: rewardConfigExtra('mean') });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config.rlhf).toEqual({ kind: 'reward_model', reward_reduction: 'mean' });
    expect(config.architectures).toEqual(['OPTForSequenceClassification']);
    const names = [...readSafetensors(join(dir, 'model.safetensors')).tensors.keys()];
    expect(names).toContain('score.weight');
    expect(names.filter((n) => n.startsWith('value_head') || n === 'lm_head.weight')).toEqual([]);
    const loaded = loadRewardModel(dir);
    expect(loaded.reduction).toBe('mean');
    const after = loaded.scoreArrays(ids, mask);
    after.forEach((r, i) => expect(r).toBeCloseTo(before[i]!, 6));
    rm.dispose();
    loaded.dispose();
  });

  it('LoRA adapter: adapter + value_head.safetensors + rlhf_config.json beside it, base found through adapter_config', async () => {
    const rm = freshRewardModel('llama');
    rm.backbone.lora = LoraAdapter.create(rm.backbone.spec, { r: 2, alpha: 4, dropout: 0, targetModules: DEFAULT_LORA_TARGETS.llama! }, 3);
    for (const { B } of rm.backbone.lora.modules.values()) B.assign(tf.randomNormal(B.shape, 0, 0.5, 'float32', 5));
    const before = rm.scoreArrays(ids, mask);
    rm.backbone.loraEnabled = false;
    const baseOnly = rm.scoreArrays(ids, mask);
    rm.backbone.loraEnabled = true;
    expect(Math.abs(baseOnly[0]! - before[0]!)).toBeGreaterThan(1e-4); // the adapter matters
    const dir = join(tmp, 'lora');
    await saveCheckpoint(dir, {
      model: rm.backbone, tokenizer: await Tokenizer.fromDir(fixtureDir('llama')), valueHead: rm.valueHead,
      configExtra: rewardConfigExtra('last'), mergeLora: false, baseModelPath: fixtureDir('llama'),
    });
    expect(existsSync(join(dir, 'config.json'))).toBe(false);
    expect(existsSync(join(dir, 'adapter_model.safetensors'))).toBe(true);
    expect(readRewardMeta(dir)).toEqual({ kind: 'reward_model', reward_reduction: 'last' });
    const loaded = loadRewardModel(dir);
    loaded.scoreArrays(ids, mask).forEach((r, i) => expect(r).toBeCloseTo(before[i]!, 5));
    rm.dispose();
    loaded.dispose();
  });

  it('answer_sum: recorded in config.json, read by both loaders, the prompt\'s values left out', async () => {
    const rm = freshRewardModel('llama', 'last');
    const dir = join(tmp, 'answer-sum');
    await saveCheckpoint(dir, { model: rm.backbone, tokenizer: await Tokenizer.fromDir(fixtureDir('llama')), valueHead: rm.valueHead, configExtra: rewardConfigExtra('answer_sum') });
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).rlhf).toEqual({ kind: 'reward_model', reward_reduction: 'answer_sum' });
    expect(readRewardReduction(dir)).toBe('answer_sum'); // PPO's and GRPO's reader
    const loaded = loadRewardModel(dir);
    expect(loaded.reduction).toBe('answer_sum');
    expect(loaded.needsAnswerMask).toBe(true);
    const values = tf.tidy(() => loaded.values(tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask, undefined, 'int32')).arraySync() as number[][]);
    const answer = [[0, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 0]]; // prompts of 4 and 1 tokens
    const expected = [values[0]![4]! + values[0]![5]!, values[1]![1]! + values[1]![2]!];
    loaded.scoreArrays(ids, mask, answer).forEach((r, i) => expect(r).toBeCloseTo(expected[i]!, 5));
    expect(() => loaded.scoreArrays(ids, mask)).toThrow(/answer_sum.*answer mask/);
    rm.dispose();
    loaded.dispose();
  });

  it('an unknown rlhf.reward_reduction is refused naming the file and field', async () => {
    const { writeFileSync, mkdirSync } = await import('node:fs');
    const dir = join(tmp, 'bad-reduction');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ rlhf: { kind: 'reward_model', reward_reduction: 'answer_max' } }));
    expect(() => readRewardMeta(dir)).toThrow(/config\.json: field "rlhf\.reward_reduction" must be one of last, mean, sum, answer_sum, answer_mean, got "answer_max"/);
    expect(() => readRewardReduction(dir)).toThrow(/config\.json: rlhf\.reward_reduction must be one of .*answer_sum/);
  });

  it('a directory without a value head is refused with a clear error', () => {
    expect(() => loadRewardModel(fixtureDir('gpt2'))).toThrow(/no value head .*not a reward model: pass the output directory of train_reward_model/);
  });
});

describe('reward model on OPT with project_out (word_embed_proj_dim ≠ hidden_size, as OPT-350m)', () => {
  beforeAll(async () => {
    await useTestBackend('cpu');
  });

  it('the head reads the projected width, as OPTForSequenceClassification, and scores', async () => {
    const { normalizeConfig } = await import('../src/models/config.js');
    const { DecoderModel } = await import('../src/models/decoder.js');
    const config = normalizeConfig({
      model_type: 'opt', num_hidden_layers: 1, num_attention_heads: 2, hidden_size: 16, ffn_dim: 32, word_embed_proj_dim: 8,
      vocab_size: 40, max_position_embeddings: 32, do_layer_norm_before: false, pad_token_id: 1,
    });
    expect(config.wordEmbedDim).toBe(8);
    const backbone = DecoderModel.fromConfig(config, 0);
    expect(() => new RewardModel(backbone, ValueHead.create(config.hiddenSize, 1))).toThrow(/output width is 8/);
    const rm = new RewardModel(backbone, ValueHead.create(config.wordEmbedDim, 1));
    const scores = tf.tidy(() => Array.from(rm.score(tf.tensor2d([[5, 6, 7, 8]], undefined, 'int32'), tf.ones([1, 4], 'int32')).dataSync()));
    expect(scores).toHaveLength(1);
    expect(Number.isFinite(scores[0]!)).toBe(true);
  });
});
