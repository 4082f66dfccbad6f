/**
 * A toy PPO task on the gpt2 fixture's vocabulary. The reward model is a hand-built one-layer GPT-2 whose score is a
 * monotone function of the share of "marked" tokens (ids ≡ 3 mod 10) in the sequence, and of nothing else:
 *   - embedding of token t: [a_t, −a_t, c, 0, …] with a_t = +1 for a marked token and −1 otherwise (so the layer
 *     norms see the same mean and variance for every token), c a constant; no position embeddings;
 *   - attention with zero queries/keys is a uniform average over the real tokens so far; its value/output
 *     projections turn that average of a_t into the marked share, written to channel 3 of the last position;
 *   - the MLP is zero; the value head reads channel 3 after the final layer norm, calibrated so that a sequence of
 *     only marked tokens scores +0.5 and one without any −0.5.
 * The actor (the gpt2 fixture, near-uniform over 600 ids) samples a marked token about one time in ten, so rewards
 * vary from the start and PPO can raise them by moving probability onto marked ids.
 */
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { DecoderModel } from '../src/models/decoder.js';
import { normalizeConfig } from '../src/models/config.js';
import { savePretrained } from '../src/models/pretrained.js';
import { ValueHead } from '../src/models/value_head.js';
import { ValueModel } from '../src/models/value_model.js';
import { fixtureDir } from './helpers/fixtures.js';

export const VOCAB = 600;
export const isMarked = (id: number): boolean => id % 10 === 3;
export const markedShare = (ids: number[]): number => (ids.length ? ids.filter(isMarked).length / ids.length : 0);

const C = 8;

function set(model: DecoderModel, name: string, fill: (data: Float32Array, shape: number[]) => void): void {
  const v = model.params.get(name)!;
  const data = new Float32Array(v.size);
  fill(data, v.shape);
  v.assign(tf.tensor(data, v.shape));
}

/** Writes the toy reward model (HF dir: config.json, model.safetensors with value_head.*, tokenizer) and returns its path. */
export async function buildToyRewardModel(dir: string): Promise<string> {
  const raw = {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: VOCAB, n_positions: 64, n_embd: C, n_layer: 1, n_head: 1,
    n_inner: null, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0,
    bos_token_id: 0, eos_token_id: 0, tie_word_embeddings: true, initializer_range: 0.02,
  };
  const model = DecoderModel.fromConfig(normalizeConfig(raw, 'toy'), 1);
  const c = 10;
  set(model, 'transformer.wte.weight', (d) => {
    for (let t = 0; t < VOCAB; t++) {
      const a = isMarked(t) ? 1 : -1;
      d[t * C] = a;
      d[t * C + 1] = -a;
      d[t * C + 2] = c;
    }
  });
  set(model, 'transformer.wpe.weight', () => {});
  for (const n of ['transformer.h.0.ln_1', 'transformer.h.0.ln_2', 'transformer.ln_f']) {
    set(model, `${n}.weight`, (d) => d.fill(1));
    set(model, `${n}.bias`, () => {});
  }
  // Layer-norm channel 0 of an unmarked and a marked embedding (affine in a_t: mean and variance do not depend on it).
  const ln0 = (a: number) => {
    const x = [a, -a, c, 0, 0, 0, 0, 0];
    const mu = x.reduce((s, v) => s + v, 0) / C;
    const varc = x.reduce((s, v) => s + (v - mu) ** 2, 0) / C;
    return (a - mu) / Math.sqrt(varc + 1e-5);
  };
  const u0 = ln0(-1);
  const delta = ln0(1) - u0;
  // c_attn [C, 3C]: q and k zero (uniform attention), v channel 3 = ln_1 channel 0.
  set(model, 'transformer.h.0.attn.c_attn.weight', (d) => {
    d[0 * 3 * C + 2 * C + 3] = 1;
  });
  set(model, 'transformer.h.0.attn.c_attn.bias', () => {});
  // c_proj [C, C]: channel 3 ← (mean v − u(unmarked)) / Δ, the marked share of the tokens attended to.
  set(model, 'transformer.h.0.attn.c_proj.weight', (d) => {
    d[3 * C + 3] = 1 / delta;
  });
  set(model, 'transformer.h.0.attn.c_proj.bias', (d) => {
    d[3] = -u0 / delta;
  });
  for (const n of ['transformer.h.0.mlp.c_fc.weight', 'transformer.h.0.mlp.c_fc.bias', 'transformer.h.0.mlp.c_proj.weight', 'transformer.h.0.mlp.c_proj.bias']) set(model, n, () => {});

  // Calibrate the head on channel 3: all marked → +0.5, none marked → −0.5.
  const probe = new ValueModel(model, new ValueHead(tf.tensor2d([[0, 0, 0, 1, 0, 0, 0, 0]]), tf.zeros([1])));
  const [s0, s1] = tf.tidy(() => {
    const none = [2, 4, 6, 8, 10, 12].filter((t) => !isMarked(t));
    const all = Array.from({ length: VOCAB }, (_, t) => t).filter(isMarked).slice(0, none.length);
    const ids = tf.tensor2d([none, all], undefined, 'int32');
    return Array.from(probe.score(ids, tf.onesLike(ids)).dataSync());
  }) as [number, number];
  probe.head.dispose();
  const k = 1 / (s1 - s0);
  const head = new ValueHead(tf.tensor2d([[0, 0, 0, k, 0, 0, 0, 0]]), tf.tensor1d([-k * (s0 + s1) / 2]));
  mkdirSync(dir, { recursive: true });
  savePretrained(model, dir, { valueHead: head, padTokenId: model.config.eosTokenId, configExtra: { rlhf: { kind: 'reward_model', reward_reduction: 'last' } } });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(fixtureDir('gpt2'), f), join(dir, f));
  model.dispose();
  head.dispose();
  return dir;
}

/** Short prompts (plain template keeps them short, so the answer dominates the marked share). */
export const TOY_PROMPTS = [
  'Hello', 'Tell me', 'Why', 'Write', 'The cat', 'Go on', 'Say it', 'Once', 'Story', 'Answer', 'Hi there', 'Please',
  'Poem', 'Next', 'More', 'Again',
];

export function writeToyPrompts(dir: string, n = TOY_PROMPTS.length): string {
  const file = join(dir, 'prompts.jsonl');
  writeFileSync(file, TOY_PROMPTS.slice(0, n).map((prompt) => JSON.stringify({ prompt })).join('\n') + '\n');
  return file;
}

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `ppo-${tag}-`));
}

/** A small, fast PPO config on the toy task (override per test). */
export function toyConfig(rmDir: string, prompts: string, savePath: string) {
  return {
    pretrain: fixtureDir('gpt2'), rmPath: rmDir, promptDataset: prompts, savePath, promptTemplate: 'plain',
    maxInputLen: 8, maxNewTokens: 10, experienceBatchSize: 8, numCollectSteps: 1, numUpdateSteps: 2, trainBatchSize: 4,
    lr: 3e-4, criticLr: 1e-3, klCoef: 0.02, numEpisodes: 30, sampleEvery: 10, seed: 7,
  };
}
