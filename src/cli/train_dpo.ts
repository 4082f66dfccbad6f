#!/usr/bin/env node
/**
 * train_dpo: preference optimization without a reward model or rollouts (DPO and its relatives), TRL's flag names.
 *
 *   train_dpo --pretrain out/sft --dataset datasets/preference/dpo_en_demo.json --loss_type sigmoid --beta 0.1 \
 *             --save_path out/dpo [--ref_model DIR] [--lora_rank 8] [--precompute_ref_log_probs]
 *
 * The output directory is an HF model directory (or, with LoRA, a PEFT adapter naming its base) that inference,
 * convert and the other stages load.
 */
import { Command, Option } from 'commander';
import {
  addCheckpointOptions, addLoopControlOptions, addLoraOptions, addModelOptions, addOptimOptions, addRunOptions, bool, float, int, loopControlsFromOptions,
  optimConfigFromOptions, runMain, sharedConfigFromOptions,
} from './common.js';
import { invokedDirectly } from './run_main.js';
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { PROMPT_TEMPLATE_HELP } from './train_grpo.js';
import { DPO_BEST_METRIC, DPO_DEFAULTS, DPO_LOSS_TYPES, TEST_SUBSET, runDpoTraining, type DpoConfig, type DpoConfigInput } from '../dpo/index.js';

const LOSS_HELP =
  'sigmoid: DPO (with --label_smoothing: cDPO); robust: robust DPO; hinge: RSO hinge; ipo: IPO on per-token-averaged log-ratios; ' +
  'simpo: SimPO (length-averaged, no reference, --simpo_gamma); orpo: ORPO (chosen NLL + --orpo_lambda · odds ratio, no reference); ' +
  'kto: KTO on unpaired desirable/undesirable examples (label true/false records, or pairs split in two)';

export function buildDpoCommand(): Command {
  const d = DPO_DEFAULTS;
  const cmd = new Command('train_dpo').description('Preference optimization on pairs, without a reward model: DPO, IPO, hinge, robust, cDPO, SimPO, ORPO, KTO');
  addModelOptions(cmd, true);
  cmd
    .option('--ref_model <dir>', 'frozen reference model (default: the --pretrain model; with LoRA, the same base with the adapter off)')
    .requiredOption('--dataset <path>', 'preference pairs: hh-rlhf dialogues, rm-static / TRL standard prompt/chosen/rejected, TRL conversational message lists, ShareGPT conversations + chosen/rejected; kto also takes prompt/completion/label records (JSON, JSONL, .gz, CSV, Arrow, Parquet, a shard folder, a save_to_disk dir)')
    .option('--eval_dataset <path>', 'held-out data (default: the dataset\'s own test split, else --eval_ratio of --dataset)')
    .option('--eval_ratio <r>', 'share of --dataset held out when there is neither --eval_dataset nor a test split', float('--eval_ratio', 0, 0.99), d.evalRatio)
    .option('--max_datasets_size <n>', 'read at most n records of each file (0: all)', int('--max_datasets_size'), d.maxDatasetsSize)
    .option('--max_len <n>', 'tokens per sequence; longer ones lose prompt tokens on the left, then completion tokens on the right', int('--max_len', 2), d.maxLen)
    .option('--test [bool]', `small run: ${TEST_SUBSET.train} training and ${TEST_SUBSET.eval} evaluation items`, bool, false)
    .addOption(new Option('--prompt_template <name>', PROMPT_TEMPLATE_HELP).choices([...PROMPT_TEMPLATE_CHOICES]).default(d.promptTemplate))
    .option('--skip_bad_records [bool]', 'skip and count malformed records instead of stopping', bool, false)
    .addOption(new Option('--loss_type <name>', LOSS_HELP).choices([...DPO_LOSS_TYPES]).default(d.lossType))
    .option('--beta <b>', 'β: strength of the pull towards the reference (DPO/IPO/KTO: 0.1); SimPO\'s reward scale (its paper: 2 to 10)', float('--beta', 0), d.beta)
    .option('--label_smoothing <eps>', 'share of preference labels assumed flipped (cDPO, robust, simpo)', float('--label_smoothing', 0, 0.5), d.labelSmoothing)
    .option('--simpo_gamma <g>', 'SimPO target reward margin γ', float('--simpo_gamma', 0), d.simpoGamma)
    .option('--orpo_lambda <l>', 'ORPO weight λ of the odds-ratio term', float('--orpo_lambda', 0), d.orpoLambda)
    .option('--desirable_weight <w>', 'KTO weight of desirable examples', float('--desirable_weight', 0), d.desirableWeight)
    .option('--undesirable_weight <w>', 'KTO weight of undesirable examples', float('--undesirable_weight', 0), d.undesirableWeight)
    .option('--precompute_ref_log_probs [bool]', 'score the data with the reference once before training, then free it', bool, false)
    .addOption(new Option('--log_steps <n>', 'old name of --logging_steps').argParser(int('--log_steps', 1)).hideHelp());
  addLoraOptions(cmd);
  addOptimOptions(cmd, { lr: d.lr, batchSize: d.batchSize, maxEpochs: d.maxEpochs });
  addLoopControlOptions(cmd, {
    unit: 'optimizer steps', loggingSteps: d.loggingSteps, defaultMetric: `${DPO_BEST_METRIC} (kto: eval/loss)`, overrides: '--max_epochs',
    otherMetrics: 'eval/loss, eval/rewards/margins, eval/rewards/chosen, eval/logps/chosen, ...',
    evaluates: 'eval/loss, eval/rewards/accuracies, margins, chosen and rejected rewards and log-probs on the held-out data',
  });
  addCheckpointOptions(cmd);
  addRunOptions(cmd);
  return cmd;
}

/** commander's parsed options (flag names) → the typed config. */
export function dpoConfigFromOptions(o: Record<string, unknown>): DpoConfigInput {
  const { loraTarget, ...shared } = sharedConfigFromOptions(o);
  return {
    ...shared,
    loraTargets: loraTarget,
    modelType: o.model as string | undefined,
    pretrain: o.pretrain as string,
    refModel: o.ref_model as string | undefined,
    tokenizer: o.tokenizer as string | undefined,
    dataset: o.dataset as string,
    evalDataset: o.eval_dataset as string | undefined,
    evalRatio: o.eval_ratio as number,
    maxLen: o.max_len as number,
    maxDatasetsSize: o.max_datasets_size as number,
    test: o.test as boolean,
    promptTemplate: o.prompt_template as string,
    lossType: o.loss_type as DpoConfig['lossType'],
    beta: o.beta as number,
    labelSmoothing: o.label_smoothing as number,
    simpoGamma: o.simpo_gamma as number,
    orpoLambda: o.orpo_lambda as number,
    desirableWeight: o.desirable_weight as number,
    undesirableWeight: o.undesirable_weight as number,
    precomputeRefLogProbs: o.precompute_ref_log_probs as boolean,
    ...optimConfigFromOptions(o),
    ...loopControlsFromOptions(o),
    loggingSteps: (o.log_steps as number | undefined) ?? (o.logging_steps as number),
  };
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildDpoCommand().parse(process.argv);
    const result = await runDpoTraining(dpoConfigFromOptions(cmd.opts()));
    if (result.interrupted) console.error(`stopped early; the checkpoint is ${result.outputDir}`);
  });
}
