#!/usr/bin/env node
/**
 * inference: generate from a model directory (any stage's output), optionally through a prompt template with
 * history and retrieved knowledge, once (`--input`) or as an interactive chat (`--chat`).
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { refuseScoringModel } from '../hub/checkpoint_kind.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { addModelOptions, bool, float, int, loadModelAndTokenizer, runMain, setupRun, threadsOption } from './common.js';
import { checkPromptFits, checkTokenizerFitsModel } from './inference_checks.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { Rng } from '../engine/rng.js';
import { generate } from '../models/generation.js';
import { PROMPT_TEMPLATE_CHOICES, resolvePromptTemplate, type PromptTemplate } from '../data/templates/index.js';
import type { ChatMessage } from '../data/types.js';
import { defaultModelDir } from '../models/default_model.js';
import type { DecoderModel } from '../models/decoder.js';
import type { Tokenizer } from '../hub/tokenizer.js';
import { resolveSampling, type ResolvedSampling } from '../models/generation_config.js';
import { FROZEN_DTYPES, frozenDtypeFromFlags, packFrozenModel } from '../models/frozen_dtype.js';

interface InferenceOptions {
  frozen_dtype?: string;
  load_in_8bit?: boolean;
  pretrain?: string;
  model?: string;
  tokenizer?: string;
  adapter?: string;
  lora?: string;
  input?: string;
  input_ids?: number[];
  template?: string;
  history?: string;
  knowledge?: string;
  chat: boolean;
  max_new_tokens?: number;
  max_length?: number;
  do_sample?: boolean;
  top_k?: number;
  top_p?: number;
  temperature?: number;
  repetition_penalty?: number;
  json: boolean;
  backend: string;
  seed: number;
}

function readHistory(file: string): ChatMessage[] {
  let pairs: unknown;
  try {
    pairs = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`--history ${file}: ${(e as Error).message}`);
  }
  if (!Array.isArray(pairs)) throw new Error(`--history ${file}: expected a JSON list of [user, assistant] pairs`);
  return pairs.flatMap((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') {
      throw new Error(`--history ${file}: entry ${i} is not a [user, assistant] pair of strings`);
    }
    return [{ role: 'user', content: p[0] }, { role: 'assistant', content: p[1] }] as ChatMessage[];
  });
}

function readKnowledge(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Cuts a reply at the template's first stop string. */
function cutAtStop(text: string, template: PromptTemplate | null): string {
  let end = text.length;
  for (const s of template?.stop ?? []) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

interface Reply {
  inputIds: number[];
  outputIds: number[];
  text: string;
  response: string;
}

/** `--input_ids 3,5,9`: token ids exactly as given. */
function parseInputIds(v: string): number[] {
  const ids = v.split(',').map((s) => s.trim());
  if (!ids.length || ids.some((s) => !/^\d+$/.test(s))) throw new InvalidArgumentError(`--input_ids must be comma-separated token ids (e.g. 3,5,9), got "${v}"`);
  return ids.map(Number);
}

function reply(model: DecoderModel, tokenizer: Tokenizer, prompt: string | number[], template: PromptTemplate | null, s: ResolvedSampling, rng: Rng): Reply {
  // Raw input is tokenized as HF's tokenizer does by default (special tokens included); a rendered template too.
  // Ids (--input_ids) go in as they are.
  // A chat template's text holds its own special tokens, as in transformers' apply_chat_template.
  const inputIds = typeof prompt === 'string' ? tokenizer.encode(prompt, { addSpecialTokens: !template?.ownsSpecialTokens }) : prompt;
  if (!inputIds.length) throw new Error('the input encodes to no tokens');
  checkPromptFits(inputIds, model.config, { maxNewTokens: s.maxNewTokens, maxLength: s.maxLength });
  // EOS: generation_config.json's ids (any of them ends the reply), else the tokenizer's, else config.json's.
  const eos = model.generationDefaults?.eosTokenIds ?? (tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : undefined);
  const out = generate(model, [inputIds], null, {
    maxNewTokens: s.maxNewTokens, maxLength: s.maxLength, doSample: s.doSample,
    topK: s.topK, topP: s.topP, temperature: s.temperature, repetitionPenalty: s.repetitionPenalty, eosTokenId: eos, rng,
  });
  const outputIds = out.sequences[0]!.slice(0, inputIds.length + out.actionMask[0]!.reduce((a, b) => a + b, 0));
  const newIds = outputIds.slice(inputIds.length);
  return {
    inputIds, outputIds,
    text: tokenizer.decode(outputIds, { skipSpecialTokens: true }),
    response: cutAtStop(tokenizer.decode(newIds, { skipSpecialTokens: true }), template).trim(),
  };
}

async function main(): Promise<void> {
  const cmd = new Command('inference')
    .description('Generate text with a model directory written by any stage (or a Hugging Face checkpoint).');
  addModelOptions(cmd, false);
  cmd
    .option('--adapter <dir>', 'apply a PEFT adapter directory: LoRA, prefix tuning or prompt tuning')
    .option('--lora <dir>', 'alias of --adapter')
    .option('--input <text>', 'the prompt (raw text, or the user turn when --template is given)')
    .option('--input_ids <ids>', 'the prompt as comma-separated token ids (e.g. 3,5,9), bypassing tokenizer and template', parseInputIds)
    .option('--template <name>', `render the input with a prompt template: ${PROMPT_TEMPLATE_CHOICES.join(', ')} (chat_template: the model's own; auto: the one the model was trained with, else its chat_template, else alpaca)`)
    .option('--history <file>', 'JSON list of earlier [user, assistant] pairs (needs --template)')
    .option('--knowledge <file>', 'retrieved passages, one per line (zh_dialogue template)')
    .option('--chat', 'interactive chat that keeps the history (template: --template, else auto)', false)
    // Sampling flags left unset take the model's generation_config.json values, else the defaults named here.
    .option('--max_new_tokens <n>', 'new tokens at most (default: generation_config.json, else 64)', int('--max_new_tokens', 1))
    .option('--max_length <n>', 'prompt + new tokens at most (instead of --max_new_tokens)', int('--max_length', 1))
    .option('--do_sample [bool]', 'sample (true) or greedy (false) (default: generation_config.json, else false)', bool)
    .option('--top_k <k>', 'sample among the k most likely tokens, 0: all (default: generation_config.json, else 50)', int('--top_k'))
    .option('--top_p <p>', 'nucleus sampling mass (default: generation_config.json, else 1)', float('--top_p', 0, 1))
    .option('--temperature <t>', 'sampling temperature (default: generation_config.json, else 1)', float('--temperature', 0))
    .option('--repetition_penalty <p>', 'penalty on tokens already present, 1: off (default: generation_config.json, else 1)', float('--repetition_penalty', 0))
    .option('--json', 'print {"input_ids", "output_ids", "text", "response"} as one JSON object', false)
    .addOption(new Option('--frozen_dtype <dtype>', 'hold the model\'s weights in bf16, int8 or nf4 (expanded inside the products; default float32)').choices([...FROZEN_DTYPES]))
    .option('--load_in_8bit [bool]', 'the weights in int8 (= --frozen_dtype int8)', bool, false)
    .option('--backend <name>', `tensor backend: ${BACKENDS.join(', ')} (env ${BACKEND_ENV})`, process.env[BACKEND_ENV] ?? 'auto')
    .addOption(threadsOption())
    .option('--seed <n>', 'sampling seed', int('--seed'), 42);
  cmd.parse();
  const o = cmd.opts<InferenceOptions>();
  if (o.input_ids && (o.input !== undefined || o.chat || o.template || o.history || o.knowledge)) {
    throw new Error('--input_ids gives the exact prompt ids: it goes without --input, --chat, --template, --history and --knowledge');
  }
  if (o.adapter && o.lora && o.adapter !== o.lora) throw new Error('--adapter and --lora (its alias) name different directories: give one');
  if (!o.input && !o.input_ids && !o.chat) throw new Error('give --input TEXT (or --input_ids 3,5,9), or --chat for an interactive session');
  if ((o.history || o.knowledge) && !o.template && !o.chat) throw new Error('--history and --knowledge need --template');
  if (o.template && !PROMPT_TEMPLATE_CHOICES.includes(o.template)) {
    throw new Error(`--template ${o.template} is unknown (choose one of: ${PROMPT_TEMPLATE_CHOICES.join(', ')})`);
  }
  await setupRun({ backend: o.backend, seed: o.seed });
  const pretrain = o.pretrain ?? defaultModelDir();
  refuseScoringModel(await resolvePretrained(pretrain), '--pretrain', 'inference generates with a language model: pass the SFT or PPO actor directory (a reward model scores texts, it does not write them).');
  const { model, tokenizer } = await loadModelAndTokenizer({
    pretrain, model: o.model, tokenizer: o.tokenizer, adapter: o.adapter ?? o.lora, promptLearning: true,
  });
  packFrozenModel(model, frozenDtypeFromFlags(o.frozen_dtype, o.load_in_8bit));
  if (o.input_ids) {
    const bad = o.input_ids.find((id) => id >= model.config.vocabSize);
    if (bad !== undefined) throw new Error(`--input_ids: id ${bad} is outside the model's vocabulary (${model.config.vocabSize} tokens)`);
  }
  checkTokenizerFitsModel(tokenizer.vocabSize, model.config, pretrain);
  const resolved = o.template || o.chat ? resolvePromptTemplate(o.template, tokenizer, 'alpaca', pretrain) : null;
  const template = resolved?.template ?? null;
  if (resolved) console.error(resolved.note);
  const rng = new Rng(o.seed);
  const sampling = resolveSampling({
    doSample: o.do_sample, temperature: o.temperature, topK: o.top_k, topP: o.top_p, repetitionPenalty: o.repetition_penalty,
    maxNewTokens: o.max_new_tokens, maxLength: o.max_length,
  }, model.generationDefaults, 64);
  if (sampling.fromFile.length) console.error(`decoding defaults from ${model.generationDefaults!.file}: ${sampling.fromFile.join(', ')}`);
  const history = o.history ? readHistory(o.history) : [];
  const knowledge = o.knowledge ? readKnowledge(o.knowledge) : undefined;
  const render = (user: string) => (template ? template.renderPrompt([...history, { role: 'user', content: user }], { knowledge }) : user);

  if (!o.chat) {
    const r = reply(model, tokenizer, o.input_ids ?? render(o.input!), template, sampling, rng);
    if (o.json) console.log(JSON.stringify({ input_ids: r.inputIds, output_ids: r.outputIds, text: r.text, response: r.response }));
    else console.log(template ? r.response : r.text);
    return;
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  console.log(`chatting with ${pretrain} (template ${template!.name}); an empty line or Ctrl-D ends`);
  try {
    for (;;) {
      let user: string;
      try {
        user = (await rl.question('you> ')).trim();
      } catch {
        break;
      }
      if (!user) break;
      const r = reply(model, tokenizer, render(user), template, sampling, rng);
      console.log(`bot> ${r.response}`);
      history.push({ role: 'user', content: user }, { role: 'assistant', content: r.response });
    }
  } finally {
    rl.close();
  }
}

runMain(main);
