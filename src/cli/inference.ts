#!/usr/bin/env node
/**
 * inference: generate from a model directory (any stage's output), optionally through a prompt template with
 * history and retrieved knowledge, once (`--input`) or as an interactive chat (`--chat`).
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { addModelOptions, bool, float, int, loadModelAndTokenizer, runMain, setupRun } from './common.js';
import { checkPromptFits, checkTokenizerFitsModel } from './inference_checks.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';
import { Rng } from '../engine/rng.js';
import { generate } from '../models/generation.js';
import { getTemplate, TEMPLATE_NAMES, type PromptTemplate } from '../data/templates/index.js';
import type { ChatMessage } from '../data/types.js';
import { defaultModelDir } from '../models/default_model.js';
import type { DecoderModel } from '../models/decoder.js';
import type { Tokenizer } from '../hub/tokenizer.js';

interface InferenceOptions {
  pretrain?: string;
  model?: string;
  tokenizer?: string;
  lora?: string;
  input?: string;
  template?: string;
  history?: string;
  knowledge?: string;
  chat: boolean;
  max_new_tokens: number;
  max_length?: number;
  do_sample: boolean;
  top_k: number;
  top_p: number;
  temperature: number;
  repetition_penalty: number;
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

function reply(model: DecoderModel, tokenizer: Tokenizer, prompt: string, template: PromptTemplate | null, o: InferenceOptions, rng: Rng): Reply {
  // Raw input is tokenized as HF's tokenizer does by default (special tokens included); a rendered template too.
  const inputIds = tokenizer.encode(prompt, { addSpecialTokens: true });
  if (!inputIds.length) throw new Error('the input encodes to no tokens');
  checkPromptFits(inputIds, model.config, { maxNewTokens: o.max_length !== undefined ? undefined : o.max_new_tokens, maxLength: o.max_length });
  const out = generate(model, [inputIds], null, {
    maxNewTokens: o.max_length !== undefined ? undefined : o.max_new_tokens, maxLength: o.max_length, doSample: o.do_sample,
    topK: o.top_k, topP: o.top_p, temperature: o.temperature, repetitionPenalty: o.repetition_penalty,
    eosTokenId: tokenizer.eosTokenId ?? model.config.eosTokenId, rng,
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
    .option('--lora <dir>', 'apply a PEFT LoRA adapter directory')
    .option('--input <text>', 'the prompt (raw text, or the user turn when --template is given)')
    .option('--template <name>', `render the input with a prompt template: ${TEMPLATE_NAMES.join(', ')}`)
    .option('--history <file>', 'JSON list of earlier [user, assistant] pairs (needs --template)')
    .option('--knowledge <file>', 'retrieved passages, one per line (zh_dialogue template)')
    .option('--chat', 'interactive chat that keeps the history (needs --template; default alpaca)', false)
    .option('--max_new_tokens <n>', 'new tokens at most', int('--max_new_tokens', 1), 64)
    .option('--max_length <n>', 'prompt + new tokens at most (instead of --max_new_tokens)', int('--max_length', 1))
    .option('--do_sample [bool]', 'sample (true) or greedy (false)', bool, false)
    .option('--top_k <k>', 'sample among the k most likely tokens (0: all)', int('--top_k'), 50)
    .option('--top_p <p>', 'nucleus sampling mass', float('--top_p', 0, 1), 1)
    .option('--temperature <t>', 'sampling temperature', float('--temperature', 0), 1)
    .option('--repetition_penalty <p>', 'penalty on tokens already present (1: off)', float('--repetition_penalty', 0), 1)
    .option('--json', 'print {"input_ids", "output_ids", "text", "response"} as one JSON object', false)
    .option('--backend <name>', `tensor backend: ${BACKENDS.join(', ')} (env ${BACKEND_ENV})`, process.env[BACKEND_ENV] ?? 'auto')
    .option('--seed <n>', 'sampling seed', int('--seed'), 42);
  cmd.parse();
  const o = cmd.opts<InferenceOptions>();
  if (!o.input && !o.chat) throw new Error('give --input TEXT, or --chat for an interactive session');
  if ((o.history || o.knowledge) && !o.template && !o.chat) throw new Error('--history and --knowledge need --template');
  const template = o.template ? getTemplate(o.template) : o.chat ? getTemplate('alpaca') : null;
  await setupRun({ backend: o.backend, seed: o.seed });
  const pretrain = o.pretrain ?? defaultModelDir();
  const { model, tokenizer } = await loadModelAndTokenizer({ pretrain, model: o.model, tokenizer: o.tokenizer, lora: o.lora });
  checkTokenizerFitsModel(tokenizer.vocabSize, model.config, pretrain);
  const rng = new Rng(o.seed);
  const history = o.history ? readHistory(o.history) : [];
  const knowledge = o.knowledge ? readKnowledge(o.knowledge) : undefined;
  const render = (user: string) => (template ? template.renderPrompt([...history, { role: 'user', content: user }], { knowledge }) : user);

  if (!o.chat) {
    const r = reply(model, tokenizer, render(o.input!), template, o, rng);
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
      const r = reply(model, tokenizer, render(user), template, o, rng);
      console.log(`bot> ${r.response}`);
      history.push({ role: 'user', content: user }, { role: 'assistant', content: r.response });
    }
  } finally {
    rl.close();
  }
}

runMain(main);
