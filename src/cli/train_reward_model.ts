#!/usr/bin/env node
/**
 * train_reward_model: Stage 2, a value-head reward model trained on preference pairs, with ColossalChat's flags.
 *
 *   train_reward_model --model gpt2 --pretrain out/sft --dataset data/hh-rlhf/train.jsonl.gz --save_path out/rm \
 *                      --loss_fn log_sig --max_len 512 --batch_size 4 --max_epochs 1 --lr 5e-6
 *
 * The output directory is an HF model directory plus the value head and an `rlhf` field in config.json (or, with
 * LoRA, a PEFT adapter beside value_head.safetensors and rlhf_config.json): train_prompts loads it by path alone.
 */
import { Command, Option } from 'commander';
import {
  addCheckpointOptions, addLoopControlOptions, addLoraOptions, addModelOptions, addOptimOptions, addRunOptions, bool, float, int, loopControlsFromOptions,
  optimConfigFromOptions, runMain, sharedConfigFromOptions,
} from './common.js';
import { invokedDirectly } from './run_main.js';
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import {
  PAIRWISE_LOSSES, REWARD_DEFAULTS, REWARD_REDUCTIONS, TEST_SUBSET, runRewardTraining, type RewardConfig, type RewardConfigInput,
} from '../reward/index.js';

export function buildRewardCommand(): Command {
  const d = REWARD_DEFAULTS;
  const cmd = new Command('train_reward_model').description('Stage 2: train a reward model (backbone + value head) on chosen/rejected pairs');
  addModelOptions(cmd, true);
  cmd
    .requiredOption('--dataset <path>', 'preference pairs: hh-rlhf chosen/rejected dialogues, rm-static prompt/chosen/rejected, or ShareGPT conversations + chosen/rejected (JSON, JSONL, .gz, CSV, Arrow, save_to_disk dir)')
    .option('--eval_dataset <path>', 'held-out pairs (default: --eval_ratio of --dataset)')
    .option('--eval_ratio <r>', 'share of --dataset held out for evaluation when there is no --eval_dataset', float('--eval_ratio', 0, 0.99), d.evalRatio)
    .option('--max_datasets_size <n>', 'read at most n records of each file (0: all)', int('--max_datasets_size'), d.maxDatasetsSize)
    .option('--max_len <n>', 'tokens per sequence; longer ones lose prompt tokens on the left, then answer tokens on the right', int('--max_len', 2), d.maxLen)
    .option('--test [bool]', `small run: ${TEST_SUBSET.train} training and ${TEST_SUBSET.eval} evaluation pairs`, bool, false)
    .addOption(new Option('--prompt_template <name>', 'how a prompt is rendered before the answer: a built-in template, chat_template (the model\'s own), or auto (the one --pretrain was trained with, else its chat_template, else human_assistant)').choices([...PROMPT_TEMPLATE_CHOICES]).default(d.promptTemplate))
    .option('--skip_bad_records [bool]', 'skip and count malformed records instead of stopping', bool, false)
    .addOption(new Option('--loss_fn <name>', 'log_sig: −log σ(r_chosen − r_rejected); log_exp: log(1 + exp(r_rejected − r_chosen))').choices([...PAIRWISE_LOSSES]).default(d.lossFn))
    .option('--group_by_prompt [bool]', 'shuffle prompts, not pairs: a prompt\'s pairs share batches and each distinct answer in a batch is scored once (for ranked answers, e.g. label_pairs output)', bool, d.groupByPrompt)
    .addOption(new Option('--reward_reduction <how>', 'reward of a sequence: the value at its last real token, the mean or the sum over its tokens, or the sum or the mean over its answer\'s tokens only (answer_sum, answer_mean)').choices([...REWARD_REDUCTIONS]).default(d.rewardReduction))
    .addOption(new Option('--log_steps <n>', 'old name of --logging_steps').argParser(int('--log_steps', 1)).hideHelp());
  addLoraOptions(cmd);
  addOptimOptions(cmd, { lr: d.lr, batchSize: d.batchSize, maxEpochs: d.maxEpochs });
  addLoopControlOptions(cmd, {
    unit: 'optimizer steps', loggingSteps: d.loggingSteps, defaultMetric: 'eval/loss', overrides: '--max_epochs',
    otherMetrics: 'eval/reward/accuracy, eval/reward/margin, eval/reward/chosen, eval/reward/rejected',
    evaluates: 'eval/loss, eval/reward/accuracy, chosen, rejected and margin on the held-out pairs',
  });
  addCheckpointOptions(cmd);
  addRunOptions(cmd);
  return cmd;
}

/** commander's parsed options (flag names) → the typed config. */
export function rewardConfigFromOptions(o: Record<string, unknown>): RewardConfigInput {
  // RewardConfig names the LoRA targets `loraTargets`.
  const { loraTarget, ...shared } = sharedConfigFromOptions(o);
  return {
    ...shared,
    loraTargets: loraTarget,
    modelType: o.model as string | undefined,
    pretrain: o.pretrain as string,
    tokenizer: o.tokenizer as string | undefined,
    rewardReduction: o.reward_reduction as RewardConfig['rewardReduction'],
    dataset: o.dataset as string,
    evalDataset: o.eval_dataset as string | undefined,
    evalRatio: o.eval_ratio as number,
    maxLen: o.max_len as number,
    maxDatasetsSize: o.max_datasets_size as number,
    test: o.test as boolean,
    promptTemplate: o.prompt_template as string,
    lossFn: o.loss_fn as RewardConfig['lossFn'],
    groupByPrompt: o.group_by_prompt as boolean,
    ...optimConfigFromOptions(o),
    ...loopControlsFromOptions(o),
    loggingSteps: (o.log_steps as number | undefined) ?? (o.logging_steps as number),
  };
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildRewardCommand().parse(process.argv);
    const result = await runRewardTraining(rewardConfigFromOptions(cmd.opts()));
    if (result.interrupted) console.error(`stopped early; the checkpoint is ${result.outputDir}`);
  });
}
