#!/usr/bin/env node
/**
 * evaluate: accuracy of a model on a verifiable set, greedy or pass@k, with train_grpo's reward functions, so a user
 * can see what RL changed.
 *
 *   evaluate --pretrain out/grpo --dataset datasets/verifiable/gsm8k-test-first200.jsonl --reward_funcs accuracy
 *   evaluate --pretrain out/grpo --dataset test.jsonl --reward_funcs ./my_rewards.mjs --num_samples 8 --output eval.jsonl
 */
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { addModelOptions, float, int, loadModelAndTokenizer, runMain, setupRun, threadsOption } from './common.js';
import { invokedDirectly } from './run_main.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { PROMPT_TEMPLATE_CHOICES, resolvePromptTemplate } from '../data/templates/index.js';
import { RewardSet } from '../rewards/combine.js';
import { prepareGrpoPrompts } from '../grpo/data.js';
import { evaluatePrompts } from '../grpo/evaluate.js';
import { DEFAULT_PROMPT_TEMPLATE } from '../grpo/trainer.js';
import { PROMPT_TEMPLATE_HELP, addRewardOptions } from './train_grpo.js';

export function buildEvaluateCommand(): Command {
  const cmd = new Command('evaluate').description('Accuracy (greedy or pass@k) of a model on a verifiable set, scored by reward functions');
  addModelOptions(cmd, true);
  cmd
    .requiredOption('--dataset <path>', 'prompts with their reference columns (e.g. GSM8K: question, answer)')
    .option('--prompt_column <field>', 'column holding the prompt (default: detected)')
    .addOption(new Option('--prompt_template <name>', PROMPT_TEMPLATE_HELP).choices([...PROMPT_TEMPLATE_CHOICES]))
    .option('--max_datasets_size <n>', 'evaluate at most n prompts; 0: all', int('--max_datasets_size', 0));
  addRewardOptions(cmd);
  cmd
    .option('--num_samples <k>', 'completions per prompt: 1 = greedy; k > 1 = sampled, reporting pass@k', int('--num_samples', 1), 1)
    .option('--threshold <r>', 'a completion is solved when its weighted reward reaches this', float('--threshold'), 1)
    .option('--batch_size <n>', 'prompts per generation batch', int('--batch_size', 1), 8)
    .option('--max_prompt_length <n>', 'prompt tokens at most', int('--max_prompt_length', 1), 256)
    .option('--max_new_tokens <n>', 'completion tokens at most', int('--max_new_tokens', 1), 64)
    .option('--temperature <t>', 'sampling temperature (num_samples > 1)', float('--temperature', 0), 1)
    .option('--top_k <k>', 'top-k (0: off)', int('--top_k', 0), 0)
    .option('--top_p <p>', 'top-p (1: off)', float('--top_p', 0, 1), 1)
    .option('--output <file>', 'write one JSON line per prompt: prompt, completions, rewards, solved')
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption())
    .option('--seed <n>', 'sampling seed', int('--seed'), 42);
  return cmd;
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const o = buildEvaluateCommand().parse(process.argv).opts();
    await setupRun({ backend: o.backend as string, seed: o.seed as number });
    const m = await loadModelAndTokenizer({ pretrain: o.pretrain as string, model: o.model as string | undefined, tokenizer: o.tokenizer as string | undefined });
    const rewards = await RewardSet.load({
      rewardFuncs: o.reward_funcs as string[], rmPaths: o.rm_path as string[], rewardWeights: o.reward_weights as number[] | undefined,
      formatPattern: o.format_pattern as string | undefined, lengthTarget: o.length_target as number | undefined, maxNewTokens: o.max_new_tokens as number,
    }, m.tokenizer);
    try {
      // as train_grpo chose it: the template the model directory recorded, else its chat template, else alpaca
      const { template, note } = resolvePromptTemplate(o.prompt_template as string | undefined, m.tokenizer, DEFAULT_PROMPT_TEMPLATE, m.pretrainDir);
      const templateName = template.name;
      process.stderr.write(`${note}\n`);
      const data = await prepareGrpoPrompts(o.dataset as string, m.tokenizer, {
        template, maxPromptLength: o.max_prompt_length as number, column: o.prompt_column as string | undefined, maxRecords: (o.max_datasets_size as number) || undefined,
      });
      const k = o.num_samples as number;
      const res = await evaluatePrompts(m.model, m.tokenizer, rewards, data.prompts, {
        numSamples: k, batchSize: o.batch_size as number, maxNewTokens: o.max_new_tokens as number, temperature: o.temperature as number,
        topK: o.top_k as number, topP: o.top_p as number, threshold: o.threshold as number, seed: o.seed as number,
        onBatch: (done, total) => process.stderr.write(`evaluate: ${done}/${total} prompts\n`),
      });
      const n = res.prompts.length;
      console.log(`${o.dataset}: ${n} prompts, template ${templateName}, rewards ${rewards.names.join(', ')}`);
      console.log(`accuracy (${k === 1 ? 'greedy' : `pass@${k}`}): ${res.passAtK.toFixed(4)} (${res.solvedPrompts}/${n})`);
      if (k > 1) console.log(`accuracy (pass@1, mean over ${k} samples): ${res.passAt1.toFixed(4)}`);
      console.log(`mean reward: ${res.meanReward.toFixed(4)}${rewards.names.length > 1 ? ` (${Object.entries(res.perSource).map(([name, v]) => `${name} ${v.toFixed(4)}`).join(', ')})` : ''}`);
      if (o.output) writeFileSync(o.output as string, res.prompts.map((p) => JSON.stringify(p)).join('\n') + '\n');
    } finally {
      rewards.dispose();
      m.model.dispose();
    }
  });
}
