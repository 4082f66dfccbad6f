/**
 * Inputs that used to be taken silently: a reward model or critic where a language model is expected, a LoRA adapter
 * whose base is gone or of another shape, a checkpoint that already finished the run, changed settings on --resume.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/engine/backend.js';
import { refuseScoringModel, scoringModelReason } from '../src/hub/checkpoint_kind.js';
import { readSafetensors, writeSafetensors } from '../src/hub/safetensors.js';
import { loadPretrained } from '../src/models/pretrained.js';
import { trainSft } from '../src/sft/index.js';
import { FIXTURES, fixtureDir } from './helpers/fixtures.js';
import { buildToyRewardModel } from './ppo_helpers.js';
import { gpt2Config, logSink, tempDir, writeNumbersJsonl } from './sft_helpers.js';

const GPT2 = fixtureDir('gpt2');

beforeAll(async () => {
  await initBackend('cpu', () => {});
});

describe('a scoring model where a language model is expected', () => {
  it('is recognised by the rlhf mark, by HF\'s ForSequenceClassification layout, or by its head tensors', async () => {
    const work = tempDir('kind');
    expect(scoringModelReason(GPT2)).toBeNull();
    expect(scoringModelReason(join(work, 'missing'))).toBeNull();
    const rm = await buildToyRewardModel(join(work, 'rm'));
    expect(scoringModelReason(rm)).toMatch(/config\.json marks it as a reward model/);

    // HF's layout (transformers' GPT2ForSequenceClassification): architectures and a `score.weight` head.
    const hf = join(work, 'hf-rm');
    cpSync(GPT2, hf, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(hf, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPT2ForSequenceClassification'], num_labels: 1 }));
    expect(scoringModelReason(hf)).toMatch(/architecture GPT2ForSequenceClassification/);
    // transformers' own reward model files (the qwen2 fixture's rm/, saved by Qwen2ForSequenceClassification)
    expect(scoringModelReason(join(FIXTURES, 'hf', 'qwen2', 'rm'))).toMatch(/Qwen2ForSequenceClassification/);
    writeFileSync(join(hf, 'config.json'), JSON.stringify(cfg));
    const tensors = new Map([...readSafetensors(join(hf, 'model.safetensors')).tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }]));
    tensors.set('score.weight', { shape: [1, 64], data: new Float32Array(64) });
    writeSafetensors(join(hf, 'model.safetensors'), tensors);
    expect(scoringModelReason(hf)).toMatch(/scalar head \(score\.weight\)/);

    expect(() => refuseScoringModel(rm, '--pretrain', 'Pass the SFT model.')).toThrow(/--pretrain .* is a reward model or critic, not a language model: .*Pass the SFT model/);
    await expect(trainSft(gpt2Config(work, { pretrain: rm }), { log: () => {}, progress: false })).rejects.toThrow(/is a reward model or critic.*train_sft fine-tunes a language model/);
  });

  it('a LoRA adapter whose base is missing, or of another shape, is a clear error', () => {
    const work = tempDir('adapter');
    const adapter = join(work, 'adapter');
    mkdirSync(adapter);
    const cfg = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['c_attn'], base_model_name_or_path: join(work, 'gone') };
    writeFileSync(join(adapter, 'adapter_config.json'), JSON.stringify(cfg));
    writeSafetensors(join(adapter, 'adapter_model.safetensors'), new Map([
      ['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', { shape: [2, 5], data: new Float32Array(10) }],
      ['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', { shape: [192, 2], data: new Float32Array(384) }],
    ]));
    expect(() => loadPretrained(adapter)).toThrow(/is a PEFT adapter whose base model .*gone .*does not exist/);
    writeFileSync(join(adapter, 'adapter_config.json'), JSON.stringify({ ...cfg, base_model_name_or_path: GPT2 }));
    expect(() => loadPretrained(adapter)).toThrow(/loading the PEFT adapter on its base model .*do not fit a \[192×64\] projection/);
  });
});

describe('--resume', () => {
  it('a checkpoint that already finished the run is reported as nothing to do; changed settings are noted', async () => {
    const work = tempDir('resume-checks');
    // 4 samples, batches of 2: 2 steps
    const base = gpt2Config(work, { dataset: [writeNumbersJsonl(work, 4)], maxDatasetsSize: undefined, maxLen: 24, saveSteps: 1, needOptimCkpt: true });
    await trainSft(base, { log: () => {}, progress: false });
    const out = join(work, 'out');
    await expect(trainSft({ ...base, resume: out }, { log: () => {}, progress: false })).rejects.toThrow(
      /nothing to do: the checkpoint at step 2 already finished the run of 2 steps/,
    );
    const { lines, log } = logSink();
    await trainSft({ ...base, savePath: join(work, 'again'), resume: join(out, 'checkpoint-1'), lr: 1e-3, pretrain: join(work, 'other') }, { log, progress: false });
    expect(lines).toContain(`note: --resume ${join(out, 'checkpoint-1')} was trained with --lr 0.002, this run has 0.001: continuing with the new value`);
    expect(lines.some((l) => /--pretrain .* the weights come from the checkpoint/.test(l))).toBe(true);
  });
});
