/**
 * Reward models in transformers' `<Family>ForSequenceClassification` layout: the fixtures' hub-layout reward models
 * score as transformers does (right- and left-padded rows, 1e-4 relative), what this project writes has that layout
 * and scores the same after loading back, the reward sits where transformers reads it (the last non-pad token), and
 * directories of the older `value_head.*` layout still load, their bias kept exactly.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { readSafetensors, writeSafetensors } from '../src/hub/safetensors.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { loadPretrained, readConfig } from '../src/models/pretrained.js';
import { ValueHead } from '../src/models/value_head.js';
import { scoreIndices } from '../src/models/value_model.js';
import { saveCheckpoint } from '../src/trainer/stage_checkpoint.js';
import { loadRewardModel, RewardModel, rewardConfigExtra, runRewardTraining } from '../src/reward/index.js';
import { FIXTURES, relErr } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'reward-hf-'));
const RM_FAMILIES = ['llama', 'qwen2', 'qwen3', 'mistral', 'gpt_neox', 'llama3', 'phi3', 'gemma2'];

/** Whether src/models reads this config; only an "unsupported" refusal counts as no (any other error fails the test). */
function configSupported(dir: string): boolean {
  try {
    readConfig(dir);
    return true;
  } catch (e) {
    return !/unsupported|not supported/i.test((e as Error).message);
  }
}

function expectedBatch(rmDir: string): { ids: number[][]; mask: number[][]; scores: number[] } {
  const t = readSafetensors(join(rmDir, 'expected.safetensors')).tensors;
  const rows = (name: string): number[][] => {
    const x = t.get(name)!;
    const [B, T] = x.shape as [number, number];
    return Array.from({ length: B }, (_, b) => Array.from(x.data.subarray(b * T, (b + 1) * T), Number));
  };
  return { ids: rows('input_ids'), mask: rows('attention_mask'), scores: Array.from(t.get('scores')!.data, Number) };
}

describe.each(RM_FAMILIES)('%s ForSequenceClassification reward model', (family) => {
  const rmDir = join(FIXTURES, 'hf', family, 'rm');
  // The newer families' backbones load once src/models reads their configs; until then this reports skipped.
  const supported = existsSync(rmDir) && configSupported(rmDir);

  it.skipIf(!supported)("scores the padded batch as transformers does (right- and left-padded rows)", () => {
    const { ids, mask, scores } = expectedBatch(rmDir);
    expect(mask[1]!.slice(-4)).toEqual([0, 0, 0, 0]);
    expect(mask[2]!.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    const rm = loadRewardModel(rmDir);
    try {
      expect(rm.valueHead.bias).toBeNull();
      expect(rm.padTokenId).not.toBeNull();
      const got = rm.scoreArrays(ids, mask);
      expect(relErr(got, scores)).toBeLessThan(1e-4);
      got.forEach((g, i) => expect(Math.abs(g - scores[i]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(scores[i]!))));
    } finally {
      rm.dispose();
    }
  });
});

describe('scored position: the last token that is not pad_token_id', () => {
  it('skips padding on either side and a pad id inside the mask (an EOS that doubles as pad)', () => {
    const ids = [[5, 6, 7, 2, 2], [2, 2, 5, 6, 7], [5, 6, 2, 2, 2], [5, 2, 6, 0, 0]];
    const mask = [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]];
    const at = (pad: number | null) =>
      tf.tidy(() => Array.from(scoreIndices(tf.tensor2d(mask, undefined, 'int32'), tf.tensor2d(ids, undefined, 'int32'), pad).dataSync()));
    expect(at(2)).toEqual([2, 4, 1, 2]); // transformers' argmax(arange · (ids ≠ pad)), here also inside the mask
    expect(at(null)).toEqual([2, 4, 2, 2]); // no pad id: the last position of the mask
  });
});

describe('writing reward models in the hub layout', () => {
  const src = join(FIXTURES, 'hf', 'llama');
  const ids = [[3, 14, 15, 92, 65, 35, 89, 79], [32, 38, 46, 26, 43, 2, 2, 2], [2, 2, 2, 71, 69, 39, 93, 75]];
  const mask = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]];

  it('LlamaForSequenceClassification: score.weight, no lm_head, one label, pad_token_id; loads back with the same scores', async () => {
    const tokenizer = await Tokenizer.fromDir(src);
    const { model } = loadPretrained(src);
    const rm = new RewardModel(model, ValueHead.create(model.config.hiddenSize, 3), 'last', tokenizer.padTokenId);
    const before = rm.scoreArrays(ids, mask);
    const dir = join(tmp, 'written');
    await saveCheckpoint(dir, { model: rm.backbone, tokenizer, valueHead: rm.valueHead, configExtra: rewardConfigExtra('last') });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({
      architectures: ['LlamaForSequenceClassification'], num_labels: 1, id2label: { '0': 'LABEL_0' }, label2id: { LABEL_0: 0 },
      pad_token_id: tokenizer.padTokenId, rlhf: { kind: 'reward_model', reward_reduction: 'last' },
    });
    const names = [...readSafetensors(join(dir, 'model.safetensors')).tensors.keys()];
    expect(names).toContain('score.weight');
    expect(names).toContain('model.norm.weight');
    expect(names.filter((n) => n === 'lm_head.weight' || n.startsWith('value_head'))).toEqual([]);
    const loaded = loadRewardModel(dir);
    expect(relErr(loaded.scoreArrays(ids, mask), before)).toBeLessThan(1e-6);
    // the same weights as the fixture's transformers-written reward model read them: same layout, same numbers
    rm.dispose();
    loaded.dispose();
  });

  it('a directory of the older layout (value_head.* with a bias) loads, and is rewritten exactly (bias in rlhf.score_bias)', async () => {
    const tokenizer = await Tokenizer.fromDir(src);
    const { model } = loadPretrained(src);
    const legacy = join(tmp, 'legacy');
    // the older layout: the causal LM's files plus value_head.safetensors
    await saveCheckpoint(legacy, { model, tokenizer });
    const w = Float32Array.from({ length: model.config.hiddenSize }, (_, i) => Math.sin(i) / 8);
    writeSafetensors(join(legacy, 'value_head.safetensors'), new Map([
      ['value_head.weight', { shape: [1, w.length], data: w }], ['value_head.bias', { shape: [1], data: Float32Array.of(0.75) }],
    ]));
    const old = loadRewardModel(legacy);
    expect(old.valueHead.biasValue()).toBeCloseTo(0.75, 6);
    const oldScores = old.scoreArrays(ids, mask);
    const rewritten = join(tmp, 'rewritten');
    await saveCheckpoint(rewritten, { model: old.backbone, tokenizer, valueHead: old.valueHead, configExtra: rewardConfigExtra('last') });
    const config = JSON.parse(readFileSync(join(rewritten, 'config.json'), 'utf8')) as { rlhf: { score_bias: number } };
    expect(config.rlhf.score_bias).toBeCloseTo(0.75, 6);
    const again = loadRewardModel(rewritten);
    expect(relErr(again.scoreArrays(ids, mask), oldScores)).toBeLessThan(1e-6);
    model.dispose();
    old.dispose();
    again.dispose();
  });

  it('a hub-layout reward model trains further (--pretrain) from its own head, and is written in the same layout', async () => {
    const from = join(FIXTURES, 'hf', 'llama', 'rm');
    const { ids: fixtureIds, mask: fixtureMask } = expectedBatch(from);
    const savePath = join(tmp, 'more');
    const lines: string[] = [];
    await runRewardTraining({
      pretrain: from, dataset: 'datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz', maxDatasetsSize: 8, evalRatio: 0,
      maxLen: 48, batchSize: 4, maxEpochs: 1, lr: 0, warmupRatio: 0, savePath, backend: 'cpu', seed: 1,
    }, { log: (l) => lines.push(l), progress: false });
    expect(lines.some((l) => l.includes('created a new one'))).toBe(false); // the checkpoint's score head was used
    const config = JSON.parse(readFileSync(join(savePath, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.architectures).toEqual(['LlamaForSequenceClassification']);
    // lr 0: the weights are the fixture's, so transformers' scores still hold
    const trained = loadRewardModel(savePath);
    const { scores } = expectedBatch(from);
    expect(relErr(trained.scoreArrays(fixtureIds, fixtureMask), scores)).toBeLessThan(1e-4);
    trained.dispose();
  }, 120_000);
});
