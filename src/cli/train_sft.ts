#!/usr/bin/env node
/**
 * train_sft: supervised fine-tuning (or continued pretraining / training from scratch) with ColossalChat's flags.
 *
 *   train_sft --pretrain models/gpt2 --dataset data/alpaca.json --save_path out/sft --prompt_template alpaca
 *   train_sft --from_config gpt2:n_layer=6,n_head=6,n_embd=384 --tokenizer char --dataset shakespeare.txt \
 *             --max_len 256 --eval_ratio 0.1 --save_path out/char
 */
import { Command, Option } from 'commander';
import {
  addCheckpointOptions, addLoopControlOptions, addLoraOptions, addModelOptions, addOptimOptions, addRunOptions, bool, float, int, loopControlsFromOptions,
  optimConfigFromOptions, runMain, sharedConfigFromOptions,
} from './common.js';
import { BIN_DTYPES } from '../data/token_bin.js';
import { invokedDirectly } from './run_main.js';
import { PROMPT_TEMPLATE_CHOICES } from '../data/templates/index.js';
import { DEFAULT_SFT_CONFIG, runSft, type SftConfig, type SftConfigInput } from '../sft/index.js';
import { DEFAULT_NUM_VIRTUAL_TOKENS, PEFT_METHODS, PROMPT_TUNING_INITS } from '../sft/config.js';

export function buildSftCommand(): Command {
  const cmd = new Command('train_sft').description('Stage 1: supervised fine-tuning of a causal LM (also plain-text pretraining)');
  addModelOptions(cmd, false);
  cmd.option('--from_config <spec>', 'train a fresh model: a config.json path, or family:key=value,... (e.g. gpt2:n_layer=6,n_head=6,n_embd=384; gpt2 also takes rlhf_bias=false: no Linear/LayerNorm biases, as nanoGPT)');
  cmd
    .requiredOption('--dataset <path...>', 'training data: JSON, JSONL, .gz, CSV, Arrow, save_to_disk dir, .txt, or nanoGPT .bin token ids (from `prepare`; with --tokenizer) (repeatable)')
    .option('--eval_dataset <path...>', 'held-out data (default: --eval_ratio of --dataset)')
    .option('--eval_ratio <r>', 'share of the training samples held out for eval loss/perplexity', float('--eval_ratio', 0, 0.99), DEFAULT_SFT_CONFIG.evalRatio)
    .option('--max_datasets_size <n>', 'use at most n samples', int('--max_datasets_size', 1))
    .option('--max_len <n>', 'longest sample in tokens (block size for plain text)', int('--max_len', 2), DEFAULT_SFT_CONFIG.maxLen)
    .addOption(new Option('--prompt_template <name>', 'prompt template for chat data: chat_template (the model\'s own), a built-in one, or auto (the model\'s chat_template when it has one, else alpaca)').choices([...PROMPT_TEMPLATE_CHOICES]).default(DEFAULT_SFT_CONFIG.promptTemplate))
    .option('--prompt_column <field>', 'field holding the prompt (overrides format detection)')
    .option('--response_column <field>', 'field holding the response to train on')
    .option('--skip_bad_records [bool]', 'skip and count malformed records instead of stopping', bool, false)
    .option('--cache_dir <dir>', 'cache of tokenized plain-text corpora', DEFAULT_SFT_CONFIG.cacheDir)
    .addOption(new Option('--bin_dtype <type>', '.bin token files: width of the ids (nanoGPT writes uint16)').choices([...BIN_DTYPES]).default(DEFAULT_SFT_CONFIG.binDtype))
    .option('--sequential [bool]', '.bin token files: walk consecutive blocks of --max_len in order instead of random blocks (nanoGPT get_batch)', bool, false)
    .option('--eval_iters <n>', '.bin eval file: evaluate on n batches of random blocks, drawn once per run (nanoGPT eval_iters); default every block in order', int('--eval_iters', 1));
  addLoraOptions(cmd);
  cmd
    .addOption(new Option('--peft <method>', 'parameter-efficient method: lora (default with --lora_rank), prefix (prefix tuning / P-tuning v2), prompt (prompt tuning)').choices([...PEFT_METHODS]))
    .option('--num_virtual_tokens <n>', `virtual tokens of --peft prefix/prompt (default ${DEFAULT_NUM_VIRTUAL_TOKENS})`, int('--num_virtual_tokens', 1))
    .addOption(new Option('--prompt_tuning_init <how>', '--peft prompt: random (standard normal) or sample_vocab (embeddings of random tokens)').choices([...PROMPT_TUNING_INITS]));
  addOptimOptions(cmd, { lr: DEFAULT_SFT_CONFIG.lr, batchSize: DEFAULT_SFT_CONFIG.batchSize, maxEpochs: DEFAULT_SFT_CONFIG.maxEpochs });
  addLoopControlOptions(cmd, { unit: 'optimizer steps', loggingSteps: DEFAULT_SFT_CONFIG.loggingSteps, evaluates: 'eval loss and perplexity on the held-out data', defaultMetric: 'eval/loss', overrides: '--max_epochs', otherMetrics: 'eval/perplexity' });
  addCheckpointOptions(cmd);
  addRunOptions(cmd);
  return cmd;
}

/** commander's parsed options (flag names) -> the typed config. */
export function sftConfigFromOptions(o: Record<string, unknown>): SftConfigInput {
  return {
    ...sharedConfigFromOptions(o),
    model: o.model as SftConfig['model'],
    pretrain: o.pretrain as string | undefined,
    fromConfig: o.from_config as string | undefined,
    tokenizer: o.tokenizer as string | undefined,
    dataset: o.dataset as string[],
    evalDataset: (o.eval_dataset as string[] | undefined) ?? [],
    evalRatio: o.eval_ratio as number,
    maxDatasetsSize: o.max_datasets_size as number | undefined,
    maxLen: o.max_len as number,
    promptTemplate: o.prompt_template as string,
    promptColumn: o.prompt_column as string | undefined,
    responseColumn: o.response_column as string | undefined,
    cacheDir: o.cache_dir as string,
    peft: o.peft as SftConfig['peft'],
    numVirtualTokens: o.num_virtual_tokens as number | undefined,
    promptTuningInit: o.prompt_tuning_init as SftConfig['promptTuningInit'],
    binDtype: o.bin_dtype as SftConfig['binDtype'],
    sequential: o.sequential as boolean,
    evalIters: o.eval_iters as number | undefined,
    ...optimConfigFromOptions(o),
    ...loopControlsFromOptions(o),
  };
}

if (invokedDirectly(import.meta.url)) {
  runMain(async () => {
    const cmd = buildSftCommand().parse(process.argv);
    const result = await runSft(sftConfigFromOptions(cmd.opts()));
    if (result.interrupted) console.error(`stopped early; the checkpoint is ${result.outputDir}`);
  });
}
