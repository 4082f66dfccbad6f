/**
 * Prefix tuning and prompt tuning in SFT (`--peft prefix|prompt`): only the adapter trains (the frozen model stays
 * bit-equal), the output is a PEFT adapter in peft 0.21's layout that loads back, `--resume` continues exactly,
 * conflicting flags are refused, and a ChatGLM-style P-tuning v2 run (content/summary columns, lr 2e-2) lowers
 * the loss through the CLI.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { readSafetensors, readSafetensorsHeader } from '../src/hub/safetensors.js';
import { loadPretrained, readWeights } from '../src/models/pretrained.js';
import { SftTrainer, resolveSftConfig, trainSft, validateSftConfig, type SftConfigInput } from '../src/sft/index.js';
import type { InterruptFlag } from '../src/trainer/interrupt.js';
import { PromptTuningAdapter } from '../src/models/prompt_tuning.js';
import { fixtureDir } from './helpers/fixtures.js';
import { ALPACA_EN, REPO, gpt2Config, tempDir, writeNumbersJsonl } from './sft_helpers.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const quiet = { log: () => {}, progress: false } as const;

/** adapter_config.json keys peft 0.21 writes (the fixture's), less the version stamp only peft itself can claim. */
function peftKeys(kind: 'prefix' | 'prompt'): string[] {
  const c = JSON.parse(readFileSync(join(fixtureDir('gpt2'), kind, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  return Object.keys(c).filter((k) => k !== 'peft_version').sort();
}

describe.each(['prefix', 'prompt'] as const)('--peft %s', (kind) => {
  it('trains only the adapter, saves it in PEFT\'s layout, and it loads back', async () => {
    const work = tempDir(`peft-${kind}`);
    const config = gpt2Config(work, { peft: kind, numVirtualTokens: 6, maxLen: 48, maxDatasetsSize: 4, lr: 2e-2 });
    const trainer = await SftTrainer.create(config, quiet);
    const initial = trainer.model.virtualTokens!.trainableVariables()[0]!.dataSync().slice();
    const result = await trainer.train();
    expect(result.steps).toBe(trainer.totalSteps);
    expect(result.steps).toBeGreaterThanOrEqual(2);
    // The frozen model: bit-equal to the checkpoint it came from.
    const base = readWeights(fixtureDir('gpt2'));
    for (const [name, v] of trainer.model.params) expect(Buffer.from((v.dataSync() as Float32Array).buffer).equals(Buffer.from((base.get(name)!.data as Float32Array).buffer)), name).toBe(true);
    const trained = trainer.model.virtualTokens!.trainableVariables()[0]!.dataSync().slice();
    expect(trained.some((x, i) => x !== initial[i])).toBe(true);

    const out = join(work, 'out');
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(cfg).sort()).toEqual(peftKeys(kind));
    expect(cfg).toMatchObject({
      peft_type: kind === 'prefix' ? 'PREFIX_TUNING' : 'PROMPT_TUNING', task_type: 'CAUSAL_LM', num_virtual_tokens: 6,
      token_dim: 64, num_layers: 2, num_attention_heads: 4, num_transformer_submodules: 1, base_model_name_or_path: resolve(fixtureDir('gpt2')),
    });
    const header = readSafetensorsHeader(join(out, 'adapter_model.safetensors'));
    expect(Object.keys(header.header)).toEqual(['prompt_embeddings']);
    expect(header.header.prompt_embeddings).toMatchObject({ dtype: 'F32', shape: kind === 'prefix' ? [6, 2 * 2 * 64] : [6, 64] });
    expect(header.metadata).toEqual({ format: 'pt' });

    // Loads back (the directory names its base), with the same logits as the trained model.
    const { model } = loadPretrained(out, { promptLearning: true });
    expect(Array.from(model.virtualTokens!.trainableVariables()[0]!.dataSync())).toEqual(Array.from(trained));
    const ids = tf.tensor2d([[5, 9, 33, 2, 71]], undefined, 'int32');
    const [a, b] = [trainer.model, model].map((m) => tf.tidy(() => m.logits(m.forward(ids).hidden)).dataSync());
    expect(Array.from(a!)).toEqual(Array.from(b!));
    model.dispose();
    trainer.dispose();
  });
});

describe('--peft flags', () => {
  const check = (over: Partial<SftConfigInput>) => () => validateSftConfig(resolveSftConfig({ dataset: [ALPACA_EN], savePath: 'x', pretrain: 'p', ...over }));
  it('refuses conflicting combinations, naming the flags', () => {
    expect(check({ peft: 'prefix', loraRank: 4 })).toThrow(/--peft prefix and --lora_rank 4 conflict/);
    expect(check({ peft: 'lora' })).toThrow(/--peft lora needs --lora_rank/);
    expect(check({ numVirtualTokens: 8 })).toThrow(/--num_virtual_tokens applies to --peft prefix or --peft prompt/);
    expect(check({ loraRank: 4, numVirtualTokens: 8 })).toThrow(/not lora/);
    expect(check({ peft: 'prompt', mergeLoraWeights: true })).toThrow(/--merge_lora_weights/);
    expect(check({ peft: 'prefix', promptTuningInit: 'random' })).toThrow(/--prompt_tuning_init applies to --peft prompt/);
    expect(check({ peft: 'prompt', numVirtualTokens: 0 })).toThrow(/integer >= 1/);
    expect(check({ peft: 'prompt', numVirtualTokens: 8 })).not.toThrow();
    expect(check({ loraRank: 4 })).not.toThrow(); // LoRA stays the default with --lora_rank
  });

  it('refuses a prefix adapter where full weights would be trained, and a resume with another method', async () => {
    const dir = join(fixtureDir('gpt2'), 'prefix');
    expect(() => loadPretrained(dir)).toThrow(/PREFIX_TUNING adapter, which this command cannot use/);
    const work = tempDir('peft-mismatch');
    await expect(SftTrainer.create(gpt2Config(work, { pretrain: dir, peft: 'prompt' }), quiet)).rejects.toThrow(/continue training it with --peft prefix/);
    // The same method trains it on, over the base its adapter_config.json names.
    const again = await SftTrainer.create(gpt2Config(work, { pretrain: dir, peft: 'prefix', maxLen: 48 }), quiet);
    expect(again.model.virtualTokens!.numVirtualTokens).toBe(5);
    again.dispose();
  });
});

describe('--prompt_tuning_init', () => {
  it('sample_vocab starts from rows of the token embedding; random from a standard normal', () => {
    const { model } = loadPretrained(fixtureDir('gpt2'));
    const emb = model.params.get(model.spec.embedTokens)!;
    const rows = tf.tidy(() => tf.split(emb, emb.shape[0]!, 0).map((t) => Array.from(t.dataSync())));
    const sampled = PromptTuningAdapter.create(model.config, emb, 3, 'SAMPLE_VOCAB', 1);
    for (const row of tf.tidy(() => tf.split(sampled.table, 3, 0).map((t) => Array.from(t.dataSync())))) {
      expect(rows.some((r) => r.every((x, i) => x === row[i]))).toBe(true);
    }
    const random = PromptTuningAdapter.create(model.config, emb, 50, 'RANDOM', 1);
    const { mean, variance } = tf.tidy(() => tf.moments(random.table));
    expect(Math.abs(mean.dataSync()[0]!)).toBeLessThan(0.05);
    expect(Math.abs(variance.dataSync()[0]! - 1)).toBeLessThan(0.05);
    tf.dispose([mean, variance]);
    sampled.dispose();
    random.dispose();
    model.dispose();
  });
});

describe('--peft prefix --resume', () => {
  it('an interrupt checkpoint + resume gives the adapter of the straight run; checkpoints are PEFT adapters', async () => {
    const config = (work: string): SftConfigInput => gpt2Config(work, {
      pretrain: fixtureDir('llama'), dataset: [writeNumbersJsonl(work, 6)], maxDatasetsSize: undefined, peft: 'prefix',
      numVirtualTokens: 3, maxLen: 48, batchSize: 2, maxEpochs: 1, lr: 1e-2, weightDecay: 0.01, saveSteps: 2, needOptimCkpt: true,
    });
    const straight = tempDir('peft-straight');
    await trainSft(config(straight), quiet);
    expect(readSafetensorsHeader(join(straight, 'out', 'checkpoint-2', 'adapter_model.safetensors')).header.prompt_embeddings!.shape).toEqual([3, 2 * 2 * 2 * 16]);

    const work = tempDir('peft-resumed');
    let first: SftTrainer | undefined;
    const flag: InterruptFlag = { get requested() { return (first?.optimization.globalStep ?? 0) >= 1; }, signal: null, dispose() {} };
    first = await SftTrainer.create(config(work), { ...quiet, interrupt: flag });
    const stopped = await first.train().finally(() => first!.dispose());
    expect(stopped.interrupted).toBe(true);
    await trainSft({ ...config(work), resume: stopped.outputDir }, quiet);
    const table = (dir: string) => readSafetensors(join(dir, 'out', 'adapter_model.safetensors')).tensors.get('prompt_embeddings')!.data;
    expect(Array.from(table(work))).toEqual(Array.from(table(straight)));
    // A resume with other PEFT flags is refused.
    await expect(SftTrainer.create({ ...config(work), peft: 'prompt', resume: stopped.outputDir }, quiet)).rejects.toThrow(/peft was "prefix", now "prompt"|differ/);
  });
});

describe('ChatGLM-style P-tuning v2 through the CLI', () => {
  it('--peft prefix --prompt_column content --response_column summary at lr 2e-2 lowers the loss step by step', () => {
    const work = tempDir('ptuning');
    // Short alpaca records rewritten with the keys of ChatGLM's AdvertiseGen data (content -> summary), one batch.
    const records = (JSON.parse(readFileSync(ALPACA_EN, 'utf8')) as { instruction: string; input: string; output: string }[])
      .filter((r) => (r.instruction + r.input + r.output).length < 160).slice(0, 4)
      .map((r) => ({ content: `${r.instruction} ${r.input}`.trim(), summary: r.output }));
    const data = join(work, 'adgen.json');
    writeFileSync(data, JSON.stringify(records));
    const save = join(work, 'out');
    // The shipped model (trained, so the loss means something), on wasm.
    execFileSync('npx', [
      'tsx', join(REPO, 'src/cli/train_sft.ts'), '--pretrain', join(REPO, 'models', 'tiny-chat'), '--dataset', data,
      '--prompt_column', 'content', '--response_column', 'summary', '--prompt_template', 'plain', '--peft', 'prefix',
      '--num_virtual_tokens', '8', '--max_len', '64', '--lr', '2e-2', '--warmup_ratio', '0', '--batch_size', '4',
      '--max_epochs', '8', '--save_path', save, '--backend', 'wasm', '--cache_dir', join(work, 'cache'),
    ], { cwd: REPO, stdio: 'pipe' });
    const losses = readFileSync(join(save, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>).filter((r) => r['train/loss'] !== undefined).map((r) => r['train/loss']!);
    expect(losses).toHaveLength(8);
    for (let i = 1; i < losses.length; i++) expect(losses[i]!, `step ${i + 1}`).toBeLessThan(losses[i - 1]!);
    expect(losses[0]! - losses.at(-1)!).toBeGreaterThan(0.03); // 4.109 -> 4.069 with this seed
    expect(JSON.parse(readFileSync(join(save, 'adapter_config.json'), 'utf8')).peft_type).toBe('PREFIX_TUNING');
  }, 120_000);
});
