#!/usr/bin/env node
/**
 * train_prompts: stage 3, PPO on prompts, with ColossalChat's train_prompts.py flags (and its old names as aliases).
 *
 *   train_prompts datasets/prompts/awesome-chatgpt-prompts.csv --pretrain out/sft --rm_path out/rm --save_path out/ppo
 *   train_prompts --prompt_dataset prompts.jsonl --pretrain out/sft --rm_path out/rm --save_path out/ppo \
 *                 --lora_rank 8 --kl_target 6 --pretrain_dataset data/alpaca.json --ptx_coef 0.1
 */
import { Command, Option } from 'commander';
import {
  addCheckpointOptions, addLoopControlOptions, addLoraOptions, addModelOptions, addRunOptions, addScheduleOptions, bool, float, int, loopControlsFromOptions,
  runMain, scheduleConfigFromOptions, setupRun, sharedConfigFromOptions,
} from './common.js';
import { invokedDirectly } from './run_main.js';
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { SUPPORTED_MODEL_TYPES } from '../models/config.js';
import { PPO_DEFAULTS, applyLegacyTimesteps, type PpoConfig, type PpoConfigInput } from '../ppo/config.js';
import { runPpo } from '../ppo/trainer.js';

const D = PPO_DEFAULTS;

export function buildPromptsCommand(): Command {
  const cmd = new Command('train_prompts')
    .description('Stage 3: PPO with actor, critic, initial and reward models')
    .argument('[prompts]', 'prompts file (CSV with a `prompt` column, JSON, JSONL); same as --prompt_dataset');
  addModelOptions(cmd, true);
  cmd
    .option('--rm_path <dir>', 'reward model directory (train_reward_model output); also where the critic starts')
    .addOption(new Option('--rm_model <type>', 'reward model family; read from config.json when omitted').choices([...SUPPORTED_MODEL_TYPES]))
    .option('--rm_pretrain <dir>', 'where the critic starts instead of --rm_path (a fresh value head unless it has one)')
    .option('--ref_pretrain <dir>', 'the frozen reference model of the KL penalty, when it is not --pretrain (e.g. the SFT model while --pretrain is an earlier PPO policy); full weights only')
    // data
    .option('--prompt_dataset <path>', 'prompts file (or give it as the first argument)')
    .addOption(new Option('--prompt_path <path>', 'old name of --prompt_dataset').hideHelp())
    .option('--prompt_column <field>', 'field holding the prompt (default: detected)')
    .addOption(new Option('--prompt_template <name>', 'prompt template: a built-in one or chat_template (the model\'s own, with the generation prompt); default: the SFT directory\'s, else its chat_template, else alpaca').choices([...PROMPT_TEMPLATE_CHOICES]))
    .option('--pretrain_dataset <path...>', 'ptx data (any SFT format): an LM loss on the actor weighted by --ptx_coef')
    .option('--max_datasets_size <n>', 'use at most n prompts (and ptx records); 0: all', int('--max_datasets_size', 0))
    .option('--skip_bad_records [bool]', 'skip and count malformed records instead of stopping', bool, false)
    // rollout schedule
    .option('--num_episodes <n>', `episodes: each collects, then updates (default ${D.numEpisodes})`, int('--num_episodes', 1))
    .option('--num_collect_steps <n>', `rollout batches per episode (default ${D.numCollectSteps})`, int('--num_collect_steps', 1))
    .option('--num_update_steps <n>', `passes over the replay buffer per episode, i.e. PPO epochs (default ${D.numUpdateSteps})`, int('--num_update_steps', 1))
    .addOption(new Option('--max_timesteps <n>', 'old name: rollouts per episode (with --update_timesteps)').argParser(int('--max_timesteps', 1)).hideHelp())
    .addOption(new Option('--update_timesteps <n>', 'old name of --num_collect_steps').argParser(int('--update_timesteps', 1)).hideHelp())
    .addOption(new Option('--max_epochs <n>', 'old name of --num_update_steps').argParser(int('--max_epochs', 1)).hideHelp())
    .option('--experience_batch_size <n>', 'prompts per rollout batch', int('--experience_batch_size', 1), D.experienceBatchSize)
    .option('--train_batch_size <n>', 'rollouts per PPO minibatch', int('--train_batch_size', 1), D.trainBatchSize)
    .option('--ptx_batch_size <n>', 'ptx samples per minibatch', int('--ptx_batch_size', 1), D.ptxBatchSize)
    .option('--max_input_len <n>', 'prompt tokens at most (longer prompts lose their beginning)', int('--max_input_len', 1), D.maxInputLen)
    .option('--max_seq_len <n>', 'prompt + answer tokens at most', int('--max_seq_len', 2), D.maxSeqLen)
    .option('--max_new_tokens <n>', 'answer tokens at most (instead of --max_seq_len)', int('--max_new_tokens', 1))
    .option('--top_k <k>', 'sample from the k most likely tokens (0: all)', int('--top_k', 0), D.topK)
    .option('--top_p <p>', 'nucleus sampling mass (1: off)', float('--top_p', 0, 1), D.topP)
    .option('--temperature <t>', 'sampling temperature', float('--temperature', 0), D.temperature)
    // algorithm
    .option('--kl_coef <beta>', 'weight of the per-token KL penalty against the initial model', float('--kl_coef', 0), D.klCoef)
    .option('--kl_target <kl>', 'adapt the KL coefficient towards this KL per answer (nats, summed over tokens)', float('--kl_target', 0))
    .option('--kl_horizon <n>', 'horizon of the adaptive KL controller, in rollouts', float('--kl_horizon', 1), D.klHorizon)
    .addOption(new Option('--kl_estimator <k>', 'KL estimator in the penalty: k1 = logp − logp_ref, k3 = (r−1) − log r, r = p_ref/p').choices(['k1', 'k3']).default(D.klEstimator))
    .option('--ptx_coef <c>', 'weight of the ptx loss', float('--ptx_coef', 0), D.ptxCoef)
    .addOption(new Option('--ptx_mix <how>', 'additive: policy + c·ptx; convex: (1−c)·policy + c·ptx (ColossalChat)').choices(['additive', 'convex']).default(D.ptxMix))
    .option('--clip_eps <eps>', 'PPO ratio clip', float('--clip_eps', 0, 1), D.clipEps)
    .option('--value_clip <c>', 'value clip around the rollout values', float('--value_clip', 0), D.valueClip)
    .option('--gamma <g>', 'discount', float('--gamma', 0, 1), D.gamma)
    .option('--lam <l>', 'GAE lambda', float('--lam', 0, 1), D.lam)
    .option('--reward_clip <c>', 'clip reward-model scores to [−c, c] (0: off)', float('--reward_clip', 0), D.rewardClip)
    .option('--whiten_advantages [bool]', 'whiten advantages over the batch', bool, D.whitenAdvantages)
    .addOption(new Option('--advantage <kind>', 'gae, or coati: ColossalChat\'s sequence-level reward − value').choices(['gae', 'coati']).default(D.advantage))
    // optimisation
    .option('--lr <lr>', 'actor learning rate', float('--lr', 0), D.lr)
    .option('--critic_lr <lr>', 'critic learning rate', float('--critic_lr', 0), D.criticLr)
    .option('--weight_decay <wd>', 'AdamW decoupled weight decay', float('--weight_decay', 0), D.weightDecay)
    .option('--grad_clip <norm>', 'clip each optimizer\'s global gradient norm (0: off)', float('--grad_clip', 0), D.gradClip)
    .option('--sample_every <n>', 'log sample generations every n episodes (0: never)', int('--sample_every', 0), D.sampleEvery);
  // The schedule counts optimizer steps (one per minibatch update, actor and critic alike); the loop controls count
  // episodes, the unit PPO logs, checkpoints and resumes in (stopping mid-episode would strand a half-used buffer).
  addScheduleOptions(cmd, { scheduler: D.lrScheduler, warmupRatio: D.warmupRatio });
  addLoopControlOptions(cmd, { unit: 'episodes', loggingSteps: D.loggingSteps, evaluates: null, defaultMetric: D.metricForBest!, overrides: '--num_episodes',
    otherMetrics: 'objective/rlhf_reward, objective/kl, response/length, loss/policy, loss/value, ... (an episode\'s metrics)',
    unitNote: 'a step of these controls is an episode (collect, then update), the unit PPO logs, checkpoints and resumes in; the lr schedule counts optimizer steps (minibatch updates)',
  });
  addLoraOptions(cmd);
  addCheckpointOptions(cmd);
  addRunOptions(cmd);
  return cmd;
}

/** commander's parsed options (flag names) and positional prompts file → the typed config. */
export function ppoConfigFromOptions(o: Record<string, unknown>, positional?: string): PpoConfigInput {
  const prompts = (o.prompt_dataset as string | undefined) ?? (o.prompt_path as string | undefined) ?? positional;
  if (!prompts) throw new Error('no prompts: give the prompts file as the first argument or with --prompt_dataset');
  if (!o.rm_path) throw new Error('--rm_path is required: the reward model directory (train_reward_model output)');
  const cfg: PpoConfigInput = {
    ...sharedConfigFromOptions(o),
    pretrain: o.pretrain as string,
    model: o.model as string | undefined,
    tokenizer: o.tokenizer as string | undefined,
    rmPath: o.rm_path as string,
    rmModel: o.rm_model as string | undefined,
    rmPretrain: o.rm_pretrain as string | undefined,
    refPretrain: o.ref_pretrain as string | undefined,
    promptDataset: prompts,
    promptColumn: o.prompt_column as string | undefined,
    promptTemplate: o.prompt_template as string | undefined,
    pretrainDataset: (o.pretrain_dataset as string[] | undefined) ?? [],
    maxDatasetsSize: o.max_datasets_size as number | undefined,
    numEpisodes: o.num_episodes as number | undefined,
    numCollectSteps: o.num_collect_steps as number | undefined,
    numUpdateSteps: o.num_update_steps as number | undefined,
    experienceBatchSize: o.experience_batch_size as number,
    trainBatchSize: o.train_batch_size as number,
    ptxBatchSize: o.ptx_batch_size as number,
    maxInputLen: o.max_input_len as number,
    maxSeqLen: o.max_seq_len as number,
    maxNewTokens: o.max_new_tokens as number | undefined,
    topK: o.top_k as number,
    topP: o.top_p as number,
    temperature: o.temperature as number,
    klCoef: o.kl_coef as number,
    klTarget: (o.kl_target as number | undefined) ?? null,
    klHorizon: o.kl_horizon as number,
    klEstimator: o.kl_estimator as PpoConfig['klEstimator'],
    ptxCoef: o.ptx_coef as number,
    ptxMix: o.ptx_mix as PpoConfig['ptxMix'],
    clipEps: o.clip_eps as number,
    valueClip: o.value_clip as number,
    gamma: o.gamma as number,
    lam: o.lam as number,
    rewardClip: o.reward_clip as number,
    whitenAdvantages: o.whiten_advantages as boolean,
    advantage: o.advantage as PpoConfig['advantage'],
    lr: o.lr as number,
    criticLr: o.critic_lr as number,
    weightDecay: o.weight_decay as number,
    gradClip: o.grad_clip as number,
    sampleEvery: o.sample_every as number,
    ...scheduleConfigFromOptions(o),
    ...loopControlsFromOptions(o),
    metricForBest: (o.metric_for_best as string | undefined) ?? D.metricForBest,
  };
  return applyLegacyTimesteps(cfg, {
    maxTimesteps: o.max_timesteps as number | undefined,
    updateTimesteps: o.update_timesteps as number | undefined,
    maxEpochs: o.max_epochs as number | undefined,
  });
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildPromptsCommand().parse(process.argv);
    const config = ppoConfigFromOptions(cmd.opts(), cmd.args[0]);
    await setupRun({ backend: config.backend ?? 'auto', seed: config.seed ?? 42 });
    const result = await runPpo(config);
    if (result.interrupted) console.error(`stopped early; the checkpoint is ${result.savedTo}`);
  });
}
