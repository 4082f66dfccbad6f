#!/usr/bin/env node
/**
 * train_grpo: online RL with group-relative advantages (GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++) and rewards from
 * code (built-ins or your own JS/TS module) or reward models. Flags follow TRL's GRPOConfig and `inference`.
 *
 *   train_grpo --pretrain out/sft --dataset datasets/verifiable/gsm8k-train-first200.jsonl \
 *              --reward_funcs accuracy,format --num_generations 8 --save_path out/grpo
 *   train_grpo --pretrain out/sft --dataset prompts.jsonl --reward_funcs ./my_rewards.mjs --rm_path out/rm \
 *              --reward_weights 1,0.5 --loss_type dr_grpo --advantage dr_grpo --beta 0.04 --lora_rank 8
 */
import { Command, Option } from 'commander';
import {
  addCheckpointOptions, addLoopControlOptions, addLoraOptions, addModelOptions, addRunOptions, addScheduleOptions, bool, float, int, loopControlsFromOptions,
  runMain, scheduleConfigFromOptions, setupRun, sharedConfigFromOptions,
} from './common.js';
import { invokedDirectly } from './run_main.js';
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { GRPO_DEFAULTS, type GrpoConfig, type GrpoConfigInput } from '../grpo/config.js';
import { ADVANTAGE_KINDS } from '../grpo/advantages.js';
import { LOSS_TYPES } from '../grpo/loss.js';
import { runGrpo } from '../grpo/trainer.js';

const D = GRPO_DEFAULTS;
/** --prompt_template's help, shared with `evaluate`. */
export const PROMPT_TEMPLATE_HELP =
  'how a prompt is rendered: a built-in template, chat_template (the model\'s own, with the generation prompt), or auto (default: the template the SFT directory was trained with, else the model\'s chat_template, else alpaca)';
const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `--reward_weights 1,0.5` → numbers, with a clear error. */
export function parseWeights(v: string): number[] {
  const w = v.split(',').map((s) => Number(s.trim()));
  if (w.some((x) => !Number.isFinite(x))) throw new Error(`--reward_weights: expected comma-separated numbers, got "${v}"`);
  return w;
}

/** Reward flags shared with `evaluate`. */
export function addRewardOptions(cmd: Command): Command {
  return cmd
    .option('--reward_funcs <names|path>', 'rewards: built-ins accuracy, format, length, or a module ./file.mjs|.js|.ts whose every exported function (prompts, completions, extra) => number[] is a reward; comma-separated or repeated', collect, [])
    .option('--rm_path <dir>', 'a reward model directory (train_reward_model output) as one more reward; repeatable', collect, [])
    .option('--reward_weights <w,...>', 'one weight per reward, in order (functions, then reward models); default all 1', parseWeights)
    .option('--format_pattern <regex>', 'the format reward\'s regular expression (default: <think>…</think><answer>…</answer>)')
    .option('--length_target <n>', 'the length reward\'s target in tokens (default: DAPO\'s soft overlong punishment)', int('--length_target', 1));
}

export function buildGrpoCommand(): Command {
  const cmd = new Command('train_grpo').description('Online RL with group-relative advantages (GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++) and code or model rewards');
  addModelOptions(cmd, true);
  cmd
    .requiredOption('--dataset <path>', 'prompts with any other columns (JSON, JSONL, CSV, …); the other columns reach the reward functions')
    .option('--prompt_column <field>', 'column holding the prompt: a string or a list of messages (default: prompt, question, query, instruction, problem, text)')
    .addOption(new Option('--prompt_template <name>', PROMPT_TEMPLATE_HELP).choices([...PROMPT_TEMPLATE_CHOICES]))
    .option('--eval_dataset <path>', 'held-out prompts (same columns as --dataset): greedy completions scored by the rewards, logged as eval/reward, eval/accuracy, eval/rewards/<fn>/mean every --eval_steps and at the end')
    .option('--max_datasets_size <n>', 'use at most n prompts; 0: all', int('--max_datasets_size', 0))
    .option('--skip_bad_records [bool]', 'skip and count malformed records instead of stopping', bool, false);
  addRewardOptions(cmd);
  cmd
    .option('--batch_size <n>', 'prompts per step (per rank)', int('--batch_size', 1), D.batchSize)
    .option('--global_batch_size <n>', 'prompts per step over all ranks (each rank takes n / ranks; overrides --batch_size)', int('--global_batch_size', 1))
    .option('--num_generations <G>', 'completions per prompt (the group)', int('--num_generations', 1), D.numGenerations)
    .option('--max_epochs <n>', 'passes over the prompts when --max_steps is not given', int('--max_epochs', 1), D.maxEpochs)
    .option('--max_prompt_length <n>', 'prompt tokens at most (longer prompts lose their beginning)', int('--max_prompt_length', 1), D.maxPromptLength)
    .option('--max_new_tokens <n>', 'completion tokens at most', int('--max_new_tokens', 1), D.maxNewTokens)
    .option('--temperature <t>', 'sampling temperature', float('--temperature', 0), D.temperature)
    .option('--top_k <k>', 'sample from the k most likely tokens (0: all)', int('--top_k', 0), D.topK)
    .option('--top_p <p>', 'nucleus sampling mass (1: off)', float('--top_p', 0, 1), D.topP)
    .option('--micro_batch_size <n>', 'completions per forward/backward in the update (memory); one optimizer step covers the batch', int('--micro_batch_size', 1), D.microBatchSize)
    .addOption(new Option('--advantage <kind>', 'grpo: group mean and std; dr_grpo: group mean only; rloo: leave-one-out baseline; reinforce_pp: REINFORCE++ (KL in the reward, batch whitening)').choices([...ADVANTAGE_KINDS]).default(D.advantage))
    .addOption(new Option('--scale_rewards <how>', 'grpo advantages divided by the group\'s std, the batch\'s, or none (TRL\'s scale_rewards)').choices(['group', 'batch', 'none']).default(D.scaleRewards))
    .addOption(new Option('--loss_type <type>', 'token-loss aggregation (TRL): grpo per-sequence mean; bnpo local token mean; dr_grpo Σ/(B·max_new_tokens); dapo global token mean').choices([...LOSS_TYPES]).default(D.lossType))
    .option('--epsilon <eps>', 'lower clip of the importance ratio', float('--epsilon', 0, 1), D.epsilon)
    .option('--epsilon_high <eps>', 'upper clip (DAPO\'s clip-higher, e.g. 0.28); default: --epsilon', float('--epsilon_high', 0))
    .option('--num_iterations <mu>', 'optimizer steps per rollout batch (the ratio to the rollout policy is clipped)', int('--num_iterations', 1), D.numIterations)
    .option('--beta <b>', 'weight of the k3 KL to the reference (reinforce_pp: KL coefficient in the reward); 0 loads no reference model', float('--beta', 0), D.beta)
    .option('--filter_zero_std [bool]', 'drop groups whose rewards are all equal from the update (DAPO dynamic sampling)', bool, D.filterZeroStd)
    .option('--lr <lr>', 'peak learning rate', float('--lr', 0), D.lr)
    .option('--weight_decay <wd>', 'AdamW decoupled weight decay', float('--weight_decay', 0), D.weightDecay)
    .option('--grad_clip <norm>', 'clip the global gradient norm (0: off)', float('--grad_clip', 0), D.gradClip)
    .option('--sample_every <n>', 'log sample completions with their rewards every n steps (0: never)', int('--sample_every', 0), D.sampleEvery);
  addScheduleOptions(cmd, { scheduler: D.lrScheduler, warmupRatio: D.warmupRatio });
  addLoopControlOptions(cmd, {
    unit: 'steps', loggingSteps: D.loggingSteps, overrides: '--max_epochs', evaluates: 'greedy completions of --eval_dataset scored by the rewards: eval/reward, eval/accuracy',
    evalDefault: 'at the end only; needs --eval_dataset',
    defaultMetric: 'eval/reward with --eval_dataset, else the step\'s reward', otherMetrics: 'eval/accuracy, eval/rewards/<fn>/mean; without --eval_dataset reward_std, rewards/<fn>/mean, completions/mean_length, policy_loss, ...',
    unitNote: 'a step is one rollout batch (--batch_size prompts × --num_generations) and its --num_iterations optimizer steps; the lr schedule counts optimizer steps',
  });
  addLoraOptions(cmd);
  addCheckpointOptions(cmd);
  addRunOptions(cmd);
  return cmd;
}

export function grpoConfigFromOptions(o: Record<string, unknown>): GrpoConfigInput {
  return {
    ...sharedConfigFromOptions(o),
    pretrain: o.pretrain as string,
    model: o.model as string | undefined,
    tokenizer: o.tokenizer as string | undefined,
    dataset: o.dataset as string,
    promptColumn: o.prompt_column as string | undefined,
    promptTemplate: o.prompt_template as string | undefined,
    evalDataset: o.eval_dataset as string | undefined,
    maxDatasetsSize: o.max_datasets_size as number | undefined,
    rewardFuncs: o.reward_funcs as string[],
    rmPaths: o.rm_path as string[],
    rewardWeights: o.reward_weights as number[] | undefined,
    formatPattern: o.format_pattern as string | undefined,
    lengthTarget: o.length_target as number | undefined,
    batchSize: o.batch_size as number,
    numGenerations: o.num_generations as number,
    globalBatchSize: o.global_batch_size as number | undefined,
    maxEpochs: o.max_epochs as number,
    maxPromptLength: o.max_prompt_length as number,
    maxNewTokens: o.max_new_tokens as number,
    temperature: o.temperature as number,
    topK: o.top_k as number,
    topP: o.top_p as number,
    microBatchSize: o.micro_batch_size as number,
    advantage: o.advantage as GrpoConfig['advantage'],
    scaleRewards: o.scale_rewards as GrpoConfig['scaleRewards'],
    lossType: o.loss_type as GrpoConfig['lossType'],
    epsilon: o.epsilon as number,
    epsilonHigh: o.epsilon_high as number | undefined,
    numIterations: o.num_iterations as number,
    beta: o.beta as number,
    filterZeroStd: o.filter_zero_std as boolean,
    lr: o.lr as number,
    ...scheduleConfigFromOptions(o),
    ...loopControlsFromOptions(o),
    weightDecay: o.weight_decay as number,
    gradClip: o.grad_clip as number,
    sampleEvery: o.sample_every as number,
  };
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildGrpoCommand().parse(process.argv);
    const config = grpoConfigFromOptions(cmd.opts());
    await setupRun({ backend: config.backend ?? 'auto', seed: config.seed ?? 42 });
    const result = await runGrpo(config);
    if (result.interrupted) console.error(`stopped early; the checkpoint is ${result.savedTo}`);
  });
}
