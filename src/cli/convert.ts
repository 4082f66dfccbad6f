#!/usr/bin/env node
/**
 * convert: rewrite a model directory for the Hugging Face ecosystem — merge a LoRA adapter into the base, change the
 * stored dtype (bf16 halves the size), keep the tokenizer and value head.
 */
import { Command, Option } from 'commander';
import { addModelOptions, loadModelAndTokenizer, runMain, setupRun, threadsOption } from './common.js';
import { savePretrained } from '../models/pretrained.js';
import { BACKENDS, BACKEND_ENV } from '../engine/backend.js';

interface ConvertOptions {
  pretrain: string;
  model?: string;
  tokenizer?: string;
  lora?: string;
  save_path: string;
  dtype: 'fp32' | 'bf16' | 'fp16';
  backend: string;
}

async function main(): Promise<void> {
  const cmd = new Command('convert').description('Merge a LoRA adapter and/or change the stored dtype of a model directory.');
  addModelOptions(cmd);
  cmd
    .option('--lora <dir>', 'PEFT LoRA adapter to merge into the weights')
    .requiredOption('--save_path <dir>', 'output HF model directory')
    .addOption(new Option('--dtype <dtype>', 'stored dtype of the float weights').choices(['fp32', 'bf16', 'fp16']).default('fp32'))
    .addOption(new Option('--backend <name>', `tensor backend (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(process.env[BACKEND_ENV] ?? 'auto'))
    .addOption(threadsOption());
  cmd.parse();
  const o = cmd.opts<ConvertOptions>();
  await setupRun({ backend: o.backend, seed: 0 });
  const { model, tokenizer, valueHead } = await loadModelAndTokenizer({ pretrain: o.pretrain, model: o.model, tokenizer: o.tokenizer, lora: o.lora });
  if (model.lora) {
    model.lora.mergeInto(model.params, model.spec);
    model.lora.dispose();
    model.lora = null;
  }
  const dtype = ({ fp32: 'F32', bf16: 'BF16', fp16: 'F16' } as const)[o.dtype];
  savePretrained(model, o.save_path, { dtype, valueHead, padTokenId: tokenizer.padTokenId });
  await tokenizer.save(o.save_path);
  console.error(`wrote ${o.save_path} (${o.dtype}${o.lora ? ', LoRA merged' : ''})`);
}

runMain(main);
