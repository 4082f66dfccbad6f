/**
 * train_grpo's prompt template and shared loop controls: the model's chat template is the default (rendered with the
 * generation prompt, BOS not added twice, recorded in the saved model, used by `evaluate`); --max_steps,
 * --logging_steps, --eval_steps with --eval_dataset, --save_steps with --save_total_limit and --save_best; and a
 * NaN run (--lr 1e10) stops naming the step and the metric, with nothing written but the checkpoints before it; the
 * train_grpo and train_dpo command lines map the shared flags (and DPO's old --log_steps).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { initBackend } from '../src/engine/backend.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import { chatTemplateOf } from '../src/data/templates/index.js';
import { GrpoTrainer } from '../src/grpo/trainer.js';
import { prepareGrpoPrompts } from '../src/grpo/data.js';
import { resolveGrpoConfig, type GrpoConfigInput } from '../src/grpo/config.js';
import { NonFiniteError } from '../src/trainer/nonfinite_guard.js';
import { listStepCheckpoints } from '../src/trainer/checkpoint_pruning.js';
import { tempDir, writeToyPrompts } from './ppo_helpers.js';
import { FIXTURES, fixtureDir } from './helpers/fixtures.js';
import { buildGrpoCommand, grpoConfigFromOptions } from '../src/cli/train_grpo.js';
import { buildDpoCommand, dpoConfigFromOptions } from '../src/cli/train_dpo.js';

const run = promisify(execFile);
let dir: string;
let prompts: string;
let reward: string;
// short, so that prompts fit the fixture's 64 positions; `eos_token` (</s>) ends each turn
const TEMPLATE = "{% for m in messages %}{{ m['role'][0] + ': ' + m['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ 'a:' }}{% endif %}";

beforeAll(async () => {
  await initBackend('wasm', () => {});
  dir = tempDir('grpo-controls');
  prompts = writeToyPrompts(dir, 8);
  reward = join(dir, 'marked.mjs');
  writeFileSync(reward, 'export function marked(p, c, e) { return e.completion_ids.map((ids) => ids.filter((t) => t % 10 === 3).length / Math.max(1, ids.length)); }\n');
});

const toy = (savePath: string, over: Partial<GrpoConfigInput> = {}): GrpoConfigInput => ({
  pretrain: fixtureDir('gpt2'), dataset: prompts, savePath, promptTemplate: 'plain', rewardFuncs: [reward],
  batchSize: 2, numGenerations: 2, maxNewTokens: 4, maxPromptLength: 8, lr: 1e-2, maxSteps: 4, sampleEvery: 0, seed: 5, ...over,
});
const quiet = { log: () => {}, progressBar: false };
const metricLines = (savePath: string) =>
  readFileSync(join(savePath, 'logs', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

describe('the chat template in train_grpo and evaluate', () => {
  /** The llama fixture with a chat template beside its tokenizer. */
  const chatModel = () => {
    const out = join(dir, 'llama-chat');
    cpSync(join(FIXTURES, 'hf', 'llama'), out, { recursive: true, filter: (src) => !/\/(lora|dpo|prefix|prompt|rm)$/.test(src) });
    writeFileSync(join(out, 'chat_template.jinja'), TEMPLATE);
    return out;
  };

  it('prompts are the template with the generation prompt, tokenized whole, one BOS (llama3)', async () => {
    const tokenizer = await Tokenizer.fromDir(join(FIXTURES, 'hf', 'llama3'));
    const template = chatTemplateOf(tokenizer)!;
    const got = await prepareGrpoPrompts(prompts, tokenizer, { template, maxPromptLength: 60, maxRecords: 1 });
    const text = template.renderText([{ role: 'user', content: 'Hello' }], true);
    expect(got.prompts[0]!.text).toBe(text);
    expect(got.prompts[0]!.ids).toEqual(tokenizer.encode(text, { addSpecialTokens: false }));
    expect(got.prompts[0]!.ids.filter((id) => id === tokenizer.bosTokenId)).toHaveLength(1);
  });

  it('is the default without --prompt_template, is recorded in the saved model, and evaluate takes it from there', async () => {
    const model = chatModel();
    const savePath = join(dir, 'chat');
    const lines: string[] = [];
    const trainer = await GrpoTrainer.create(toy(savePath, { pretrain: model, promptTemplate: undefined, maxSteps: 1, maxPromptLength: 16, sampleEvery: 1 }), { ...quiet, log: (l) => lines.push(l) });
    expect(trainer.templateName).toBe('chat_template');
    await trainer.train();
    trainer.dispose();
    expect(lines.some((l) => l.includes("prompt template: the model's chat_template"))).toBe(true);
    const sample = JSON.parse(readFileSync(join(savePath, 'logs', 'samples.jsonl'), 'utf8').split('\n')[0]!) as { text: string };
    expect(sample.text).toMatch(/^u: .+<\/s>a:/);
    expect(JSON.parse(readFileSync(join(savePath, 'config.json'), 'utf8')).rlhf).toEqual({ kind: 'grpo_policy', prompt_template: 'chat_template' });
    const state = JSON.parse(readFileSync(join(savePath, 'trainer_state.json'), 'utf8')) as { grpo: { prompt_template: string } };
    expect(state.grpo.prompt_template).toBe('chat_template');

    const { stderr, stdout } = await run('npx', ['tsx', 'src/cli/evaluate.ts', '--pretrain', savePath, '--dataset', prompts, '--reward_funcs', reward,
      '--max_datasets_size', '2', '--max_new_tokens', '2', '--max_prompt_length', '16', '--backend', 'wasm'], { timeout: 120_000 });
    // the saved tokenizer keeps the chat template, and the recorded name says to use it
    expect(stderr).toContain(`prompt template: the model's chat_template (${savePath}/tokenizer_config.json`);
    expect(stdout).toContain('template chat_template');
  }, 180_000);

  it('--prompt_template chat_template on a model without one fails clearly', async () => {
    await expect(GrpoTrainer.create(toy(join(dir, 'nochat'), { promptTemplate: 'chat_template' }), quiet)).rejects.toThrow(/--prompt_template chat_template: the tokenizer has no chat template/);
  });
});

describe('loop controls', () => {
  it('--logging_steps 2 and --eval_steps 2 log at steps 2 and 4; --save_total_limit 2 keeps the newest and the best; --save_best', async () => {
    const savePath = join(dir, 'controls');
    const lines: string[] = [];
    const t = await GrpoTrainer.create(toy(savePath, {
      evalDataset: prompts, evalSteps: 2, loggingSteps: 2, saveSteps: 1, saveTotalLimit: 2, saveBest: true, needOptimCkpt: true, lrScheduler: 'linear', warmupSteps: 1,
    }), { ...quiet, log: (l) => lines.push(l) });
    const { history } = await t.train();
    t.dispose();
    expect(history).toHaveLength(4);
    // --lr_scheduler linear: the learning rate falls over the run (constant is the default)
    const lrs = history.map((h) => h['train/lr']!);
    expect(lrs[3]).toBeLessThan(lrs[2]!);
    expect(lrs[2]).toBeLessThan(lrs[1]!);
    expect(Math.max(...lrs)).toBeLessThanOrEqual(1e-2);
    const m = metricLines(savePath);
    expect(m.filter((r) => 'reward' in r).map((r) => r.step)).toEqual([2, 4]);
    const evals = m.filter((r) => 'eval/reward' in r);
    expect(evals.map((r) => r.step)).toEqual([2, 4]);
    for (const r of evals) for (const k of ['eval/reward', 'eval/accuracy', 'eval/rewards/marked/mean']) expect(Number.isFinite(r[k])).toBe(true);
    // checkpoints after steps 1, 2, 3 (4 is the final model); the limit keeps the newest and the best one
    const best = evals.reduce((a, r) => (r['eval/reward']! > a['eval/reward']! ? r : a));
    const kept = listStepCheckpoints(savePath).map((c) => c.step);
    expect(kept).toHaveLength(2);
    expect(kept).toContain(3);
    if (best.step === 2) expect(kept).toContain(2);
    expect(lines.some((l) => /removed .*checkpoint-1 \(--save_total_limit 2\)/.test(l))).toBe(true);
    const bestState = JSON.parse(readFileSync(join(savePath, 'best', 'trainer_state.json'), 'utf8')) as { global_step: number };
    expect(bestState.global_step).toBe(best.step);
    const final = JSON.parse(readFileSync(join(savePath, 'trainer_state.json'), 'utf8')) as { best_metric: number; best_step: number };
    expect(final).toMatchObject({ best_metric: best['eval/reward'], best_step: best.step });
  }, 180_000);

  it('without --eval_dataset, --eval_steps is refused and --save_best ranks the steps by reward', async () => {
    expect(() => resolveGrpoConfig(toy('x', { evalSteps: 2 }))).toThrow(/--eval_steps: train_grpo evaluates held-out prompts only with --eval_dataset/);
    const t = await GrpoTrainer.create(toy(join(dir, 'by-reward'), { maxSteps: 2, saveBest: true }), quiet);
    expect(t.controls.best.metric).toBe('reward');
    const { history } = await t.train();
    t.dispose();
    expect(t.controls.best.value).toBe(Math.max(...history.map((h) => h.reward!)));
    expect(existsSync(join(dir, 'by-reward', 'best', 'model.safetensors'))).toBe(true);
  }, 120_000);

  it('--global_batch_size sets the prompts per step', async () => {
    const t = await GrpoTrainer.create(toy(join(dir, 'global'), { globalBatchSize: 4, batchSize: undefined, maxSteps: 1 }), quiet);
    const { history } = await t.train();
    t.dispose();
    expect(history[0]!['completions/mean_length']).toBeGreaterThan(0);
    expect(t.config.batchSize).toBe(4);
  }, 120_000);
});

describe('non-finite numbers', () => {
  it('--lr 1e10 stops with NonFiniteError naming the step and metric; only the checkpoints before it are on disk', async () => {
    const savePath = join(dir, 'nan');
    const t = await GrpoTrainer.create(toy(savePath, { lr: 1e10, maxSteps: 6, saveSteps: 1, needOptimCkpt: true }), quiet);
    const err = await t.train().catch((e: unknown) => e);
    t.dispose();
    expect(err).toBeInstanceOf(NonFiniteError);
    const e = err as NonFiniteError;
    expect(e.message).toMatch(new RegExp(`^step ${e.step}: ${e.metric.replace('/', '\\/')} is .*was not written`));
    const steps = listStepCheckpoints(savePath).map((c) => c.step);
    expect(steps.every((s) => s < e.step)).toBe(true);
    expect(readdirSync(savePath).filter((n) => !n.startsWith('checkpoint-') && n !== 'logs')).toEqual([]);
  }, 120_000);
});

describe('the flags of train_grpo and train_dpo', () => {
  const parse = (cmd: ReturnType<typeof buildGrpoCommand>, args: string[]) => cmd.parse(['node', 'x', ...args]).opts();
  it('train_grpo maps the shared controls, the schedule, the global batch and the guard', () => {
    const c = grpoConfigFromOptions(parse(buildGrpoCommand(), ['--pretrain', 'p', '--dataset', 'd', '--save_path', 's', '--reward_funcs', 'format',
      '--max_steps', '9', '--eval_dataset', 'e', '--eval_steps', '3', '--logging_steps', '2', '--save_steps', '4', '--save_total_limit', '1', '--save_best',
      '--metric_for_best', 'eval/accuracy', '--lr_scheduler', 'cosine', '--warmup_steps', '2', '--global_batch_size', '8', '--skip_nonfinite_steps', '1',
      '--loss_spike_factor', '0', '--prompt_template', 'chat_template']));
    expect(c).toMatchObject({
      maxSteps: 9, evalDataset: 'e', evalSteps: 3, loggingSteps: 2, saveSteps: 4, saveTotalLimit: 1, saveBest: true, metricForBest: 'eval/accuracy',
      lrScheduler: 'cosine', warmupSteps: 2, globalBatchSize: 8, skipNonfiniteSteps: 1, lossSpikeFactor: 0, promptTemplate: 'chat_template',
    });
    const d = resolveGrpoConfig(grpoConfigFromOptions(parse(buildGrpoCommand(), ['--pretrain', 'p', '--dataset', 'd', '--save_path', 's', '--reward_funcs', 'format'])));
    expect(d).toMatchObject({ lrScheduler: 'constant', loggingSteps: 1, evalSteps: 0, saveTotalLimit: 0, saveBest: false });
    expect(d.promptTemplate).toBeUndefined(); // auto
  });

  it('train_dpo maps the shared controls; the old --log_steps still sets the logging cadence', () => {
    const dpo = (args: string[]) => dpoConfigFromOptions(buildDpoCommand().parse(['node', 'x', '--pretrain', 'p', '--dataset', 'd', '--save_path', 's', ...args]).opts());
    expect(dpo(['--max_steps', '5', '--eval_steps', '2', '--logging_steps', '3', '--save_total_limit', '2', '--save_best', '--lr_scheduler', 'linear', '--global_batch_size', '8']))
      .toMatchObject({ maxSteps: 5, evalSteps: 2, loggingSteps: 3, saveTotalLimit: 2, saveBest: true, lrScheduler: 'linear', globalBatchSize: 8 });
    expect(dpo(['--log_steps', '1']).loggingSteps).toBe(1);
    expect(dpo([]).loggingSteps).toBe(10);
  });
});
