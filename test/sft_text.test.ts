/**
 * Plain-text pretraining from scratch: `--from_config gpt2:...` + `--tokenizer char` on a slice of tinyshakespeare
 * trains, saves a checkpoint with its tokenizer.json that reloads, and a second run takes the packed tokens from the
 * cache without encoding. Plus one smoke test of the `train_sft` command line.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { rawConfigFromSpec, SftTrainer, type SftConfigInput } from '../src/sft/index.js';
import { relErr } from './helpers/fixtures.js';
import { logSink, REPO, SHAKESPEARE, tempDir } from './sft_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The first `chars` characters of tinyshakespeare as a .txt file. */
function shakespeareSlice(dir: string, chars: number): string {
  const file = join(dir, 'shakespeare_slice.txt');
  writeFileSync(file, readFileSync(SHAKESPEARE, 'utf8').slice(0, chars));
  return file;
}

function charConfig(work: string, dataset: string, cacheDir: string): SftConfigInput {
  return {
    fromConfig: 'gpt2:n_layer=1,n_head=2,n_embd=32', tokenizer: 'char', dataset: [dataset], savePath: join(work, 'out'),
    cacheDir, maxLen: 32, batchSize: 8, maxEpochs: 1, evalRatio: 0.1, lr: 3e-3, warmupRatio: 0, backend: 'cpu',
  };
}

describe('--from_config + --tokenizer char on tinyshakespeare', () => {
  it('parses family:key=value specs over the family defaults', () => {
    const { raw, setsPositions } = rawConfigFromSpec('gpt2:n_layer=6,n_head=6,n_embd=384,resid_pdrop=0.2');
    expect(raw).toMatchObject({ model_type: 'gpt2', n_layer: 6, n_head: 6, n_embd: 384, resid_pdrop: 0.2, n_positions: 1024 });
    expect(setsPositions).toBe(false);
    expect(rawConfigFromSpec('num_hidden_layers=2', 'llama').raw).toMatchObject({ model_type: 'llama', num_hidden_layers: 2 });
    expect(() => rawConfigFromSpec('n_layer=2', 'llama')).toThrow(/a llama config has no "n_layer" \(its keys: .*num_hidden_layers/);
    expect(() => rawConfigFromSpec('gpt3:n_layer=2')).toThrow(/neither a config\.json path nor a model family/);
    expect(() => rawConfigFromSpec('gpt2:n_layer')).toThrow(/"n_layer" is not key=value/);
  });

  it('trains, saves a checkpoint (tokenizer.json included) that reloads; a second run hits the token cache', async () => {
    const work = tempDir('char');
    const data = shakespeareSlice(work, 3000);
    const cacheDir = join(work, 'cache');
    const first = logSink();
    const trainer = await SftTrainer.create(charConfig(work, data, cacheDir), { log: first.log, progress: false });
    try {
      expect(trainer.data.mode).toBe('text');
      expect(trainer.data.fromCache).toBe(false);
      expect(first.lines.some((l) => l.includes('token cache miss'))).toBe(true);
      const vocab = trainer.tokenizer.vocabSize;
      expect(vocab).toBe(new Set(readFileSync(data, 'utf8')).size + 2); // characters + <unk> + <|endoftext|>
      expect(trainer.model.config).toMatchObject({ numLayers: 1, numHeads: 2, hiddenSize: 32, vocabSize: vocab, maxPositions: 32 });
      const before = trainer.evaluate()!;
      const result = await trainer.train();
      expect(result.steps).toBeGreaterThan(5);
      expect(result.evals[result.evals.length - 1]!.loss).toBeLessThan(before.loss);

      const out = join(work, 'out');
      expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
      const tok = await Tokenizer.fromDir(out);
      const text = 'First Citizen:\nBefore we proceed';
      expect(tok.decode(tok.encode(text))).toBe(text);
      expect(tok.encode(text)).toEqual(trainer.tokenizer.encode(text));
      const reloaded = loadPretrained(out).model;
      expect(reloaded.config.vocabSize).toBe(vocab);
      const ids = tf.tensor2d([tok.encode(text)], undefined, 'int32');
      const mine = trainer.model.logits(trainer.model.forward(ids).hidden);
      const theirs = reloaded.logits(reloaded.forward(ids).hidden);
      expect(relErr(theirs.dataSync(), mine.dataSync())).toBeLessThan(1e-6);
      tf.dispose([ids, mine, theirs]);
      reloaded.dispose();
    } finally {
      trainer.dispose();
    }

    // Second run, same corpus and tokenizer: packed tokens come from the cache; nothing is encoded.
    const encode = vi.spyOn(Tokenizer.prototype, 'encode');
    const second = logSink();
    const again = await SftTrainer.create(charConfig(tempDir('char2'), data, cacheDir), { log: second.log, progress: false });
    try {
      expect(again.data.fromCache).toBe(true);
      expect(second.lines.some((l) => l.includes('token cache hit'))).toBe(true);
      expect(encode).not.toHaveBeenCalled();
      expect(again.data.train.map((s) => s.inputIds)).toEqual(trainer.data.train.map((s) => s.inputIds));
    } finally {
      again.dispose();
    }
  });
});

describe('train_sft command line', () => {
  it('runs a tiny SFT from flags and writes the model directory and metrics', async () => {
    const work = tempDir('cli');
    const data = join(work, 'tiny.jsonl');
    writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ instruction: `Count to ${i}.`, output: `${i}.` })).join('\n') + '\n');
    const out = join(work, 'out');
    const { stdout, stderr } = await promisify(execFile)(
      join(REPO, 'node_modules', '.bin', 'tsx'),
      [
        join(REPO, 'src', 'cli', 'train_sft.ts'), '--pretrain', join(REPO, 'test', 'fixtures', 'hf', 'gpt2'), '--dataset', data,
        '--save_path', out, '--max_len', '64', '--prompt_template', 'human_assistant', '--batch_size', '2',
        '--max_epochs', '1', '--lr', '1e-3', '--eval_ratio', '0.34', '--need_optim_ckpt', 'True', '--backend', 'cpu',
      ],
      { cwd: work, env: { ...process.env, CI: 'true' }, timeout: 90_000 },
    );
    expect(stderr).toMatch(/backend: cpu/);
    expect(stderr).toMatch(/sft: 4 train \/ 2 eval samples/);
    expect(stdout).toMatch(/sft step 2\/2/);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'trainer_state.json', 'optimizer.safetensors', 'logs/metrics.jsonl']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
  });
});
