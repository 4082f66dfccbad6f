#!/usr/bin/env node
/**
 * score: the reward a reward model gives, without writing code.
 *
 *   score --rm_path out/rm --input "What is RLHF?" --response "Training from human feedback."
 *   score --rm_path out/rm --input_ids 3,5,9 --json          # {"scores": [...]}
 *   score --rm_path out/rm --dataset answers.jsonl            # one reward per record
 *
 * Any reward model loads: transformers' `<Family>ForSequenceClassification` directories (hub reward models, TRL's
 * RewardTrainer outputs, train_reward_model outputs) and the older `value_head.*` ones. What is scored:
 * - `--input_ids`: exactly these ids;
 * - `--input TEXT`: the text as the tokenizer encodes it by default (special tokens included), as transformers users
 *   score text; with `--response TEXT`, `--input` is the user turn and the pair is rendered with the prompt template
 *   and tokenized as train_reward_model tokenizes its pairs;
 * - `--dataset FILE`: every record, in any SFT format (its conversation up to the last reply is the prompt, the reply
 *   the answer, rendered as above) or plain text (`text` records, .txt lines).
 * The reward is read where transformers reads it (the last token that is not pad_token_id), or as the reward model's
 * directory records (`rlhf.reward_reduction`); for the answer-only reductions a text without a prompt (`--input`
 * alone, `--input_ids`, plain-text records) is all answer.
 */
import { Command, Option } from 'commander';
import { int, runMain, setupRun, threadsOption } from './common.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { loadSftSamples } from '../data/formats.js';
import { isChatSample, type ChatMessage, type RecordLocation } from '../data/types.js';
import { DataError } from '../data/location.js';
import { PROMPT_TEMPLATE_CHOICES, resolvePromptTemplate, type PromptTemplate } from '../data/templates/index.js';
import { padBatch } from '../data/batching.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { encodeRewardSequence, loadRewardModel, REWARD_FALLBACK_TEMPLATE, tokenizerAddsBos, type RewardModel } from '../reward/index.js';
import { FROZEN_DTYPES, frozenDtypeFromFlags, packFrozenModel } from '../models/frozen_dtype.js';
import { answerMaskRows } from '../models/value_model.js';

interface ScoreOptions {
  frozen_dtype?: string;
  load_in_8bit?: boolean;
  rm_path: string;
  tokenizer?: string;
  input?: string;
  response?: string;
  input_ids?: string;
  dataset?: string;
  prompt_template?: string;
  max_len: number;
  batch_size: number;
  max_datasets_size?: number;
  json: boolean;
  backend: string;
}

function parseIds(text: string, vocabSize: number): number[] {
  const ids = text.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (!ids.length) throw new Error('--input_ids: give comma-separated token ids, e.g. 3,5,9');
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(`--input_ids: entry ${i} (${text.split(',')[i]}) is not a token id in [0, ${vocabSize})`);
    }
  });
  return ids;
}

/** A conversation ending with the reply to score, as the prompt and the answer. */
function splitReply(messages: ChatMessage[], location: RecordLocation | undefined): { prompt: ChatMessage[]; answer: string } {
  const last = messages[messages.length - 1];
  if (!last || last.role !== 'assistant') throw new DataError(location, 'the record has no reply to score (its last message is not the assistant\'s)');
  return { prompt: messages.slice(0, -1), answer: last.content };
}

/** One sequence to score: its ids and how many of them are the prompt (0: all answer). */
interface ScoredRow {
  ids: number[];
  promptLen: number;
}

/** The id rows to score, with a note on truncation. */
async function sequences(o: ScoreOptions, tokenizer: Tokenizer, template: () => PromptTemplate, maxLen: number): Promise<ScoredRow[]> {
  const encode = (prompt: ChatMessage[], answer: string, location?: RecordLocation): ScoredRow =>
    encodeRewardSequence(template(), { prompt, location }, answer, tokenizer, { maxLen, addBos: !template().ownsSpecialTokens && tokenizerAddsBos(tokenizer) });
  const plain = (text: string): ScoredRow => {
    const ids = tokenizer.encode(text);
    if (!ids.length) throw new Error('the text encodes to no tokens');
    return { ids: ids.length > maxLen ? ids.slice(0, maxLen) : ids, promptLen: 0 };
  };
  if (o.input_ids !== undefined) return [{ ids: parseIds(o.input_ids, tokenizer.vocabSize), promptLen: 0 }];
  if (o.input !== undefined) return [o.response === undefined ? plain(o.input) : encode([{ role: 'user', content: o.input }], o.response)];
  const { samples, skipped } = await loadSftSamples(o.dataset!, { maxRecords: o.max_datasets_size });
  if (skipped) console.error(`${o.dataset}: skipped ${skipped} bad record(s)`);
  return samples.map((s) => {
    if (!isChatSample(s)) return plain(s.text);
    const { prompt, answer } = splitReply(s.messages, s.location);
    return encode(prompt, answer, s.location);
  });
}

function scoreAll(rm: RewardModel, rows: ScoredRow[], padTokenId: number, batchSize: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const part = rows.slice(i, i + batchSize);
    const batch = padBatch(part.map((r) => ({ inputIds: r.ids })), { padTokenId, side: 'right' });
    const T = batch.inputIds[0]!.length;
    out.push(...rm.scoreArrays(batch.inputIds, batch.attentionMask, answerMaskRows(part.map((r) => r.promptLen), part.map((r) => r.ids.length), T)));
  }
  return out;
}

async function main(): Promise<void> {
  const cmd = new Command('score')
    .description('Print the reward a reward model gives to texts, token ids or a dataset\'s records.')
    .requiredOption('--rm_path <dir|hub id>', 'reward model: a ForSequenceClassification directory (or the older value_head layout), or a Hub id')
    .option('--tokenizer <dir>', 'tokenizer directory (default: the --rm_path directory)')
    .option('--input <text>', 'a text to score (with --response: the user turn)')
    .option('--response <text>', 'the answer to --input, rendered with the prompt template')
    .option('--input_ids <ids>', 'exact token ids to score, comma-separated (e.g. 3,5,9)')
    .option('--dataset <file>', 'score every record: SFT formats (the last reply is the answer) or plain text')
    .option('--max_datasets_size <n>', 'score at most n records', int('--max_datasets_size', 1))
    .addOption(new Option('--prompt_template <name>', 'template for --response and --dataset: a built-in one, chat_template, or auto (the one the reward model was trained with, else its chat_template, else human_assistant)').choices([...PROMPT_TEMPLATE_CHOICES]).default('auto'))
    .option('--max_len <n>', 'longest sequence in tokens (prompts lose tokens on the left, then answers on the right)', int('--max_len', 2), 512)
    .option('--batch_size <n>', 'sequences scored at once', int('--batch_size', 1), 8)
    .option('--json', 'print {"scores": [...]}', false)
    .addOption(new Option('--frozen_dtype <dtype>', 'hold the reward model\'s backbone in bf16, int8 or nf4 (expanded inside the products; default float32)').choices([...FROZEN_DTYPES]))
    .option('--load_in_8bit', 'the backbone in int8 (= --frozen_dtype int8)', false)
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption());
  cmd.parse();
  const o = cmd.opts<ScoreOptions>();
  const given = [o.input, o.input_ids, o.dataset].filter((x) => x !== undefined).length;
  if (given !== 1) throw new Error('give exactly one of --input TEXT, --input_ids 3,5,9 or --dataset FILE');
  if (o.response !== undefined && o.input === undefined) throw new Error('--response needs --input (the user turn it answers)');
  await setupRun({ backend: o.backend, seed: 0 });
  const dir = await resolvePretrained(o.rm_path);
  const tokenizer = await Tokenizer.fromDir(o.tokenizer ?? dir);
  let template: PromptTemplate | null = null;
  const templateOf = (): PromptTemplate => {
    if (!template) {
      const resolved = resolvePromptTemplate(o.prompt_template, tokenizer, REWARD_FALLBACK_TEMPLATE, dir);
      console.error(resolved.note);
      template = resolved.template;
    }
    return template;
  };
  const frozen = frozenDtypeFromFlags(o.frozen_dtype, o.load_in_8bit);
  const rm = loadRewardModel(dir);
  try {
    packFrozenModel(rm.backbone, frozen);
    const maxLen = Math.min(o.max_len, rm.backbone.config.maxPositions);
    const rows = await sequences(o, tokenizer, templateOf, maxLen);
    const pad = tokenizer.padTokenId ?? rm.padTokenId ?? 0;
    const scores = scoreAll(rm, rows, pad, o.batch_size);
    if (o.json) console.log(JSON.stringify({ scores }));
    else for (const s of scores) console.log(String(s));
  } finally {
    rm.dispose();
  }
}

runMain(main);
