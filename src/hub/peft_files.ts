/**
 * PEFT adapter directories as `PeftModel.save_pretrained` writes them: `adapter_config.json` (with `peft_type`) and
 * `adapter_model.safetensors`. This module reads and writes the files and checks the fields every method shares;
 * what the tensors mean is the models layer's business (lora.ts, prefix_tuning.ts, prompt_tuning.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors, type LoadedTensor } from './safetensors.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The PEFT methods this project applies and trains. */
export const SUPPORTED_PEFT_TYPES = ['LORA', 'PREFIX_TUNING', 'PROMPT_TUNING'] as const;
export type PeftType = (typeof SUPPORTED_PEFT_TYPES)[number];

export interface PeftAdapterFiles {
  dir: string;
  configFile: string;
  peftType: PeftType;
  /** adapter_config.json as written (every field, PEFT's names). */
  config: Record<string, unknown>;
  weightsFile: string;
  tensors: Map<string, LoadedTensor>;
}

export function isPeftAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE));
}

/** adapter_config.json alone (for the base model's path before any weights are read). */
export function readPeftAdapterConfig(dir: string): { configFile: string; peftType: PeftType; config: Record<string, unknown> } {
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(configFile)) throw new Error(`${dir}: not a PEFT adapter (no ${ADAPTER_CONFIG_FILE})`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${configFile}: invalid JSON (${(e as Error).message})`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new Error(`${configFile}: expected a JSON object`);
  // Adapters written before PEFT recorded the type are LoRA adapters (the only kind then).
  const type = config.peft_type ?? 'LORA';
  if (!(SUPPORTED_PEFT_TYPES as readonly unknown[]).includes(type)) {
    throw new Error(`${configFile}: peft_type ${JSON.stringify(type)} is not supported (supported: ${SUPPORTED_PEFT_TYPES.join(', ')})`);
  }
  const task = config.task_type;
  if (task !== undefined && task !== null && task !== 'CAUSAL_LM') {
    throw new Error(`${configFile}: task_type ${JSON.stringify(task)} is not supported (only CAUSAL_LM adapters apply to a decoder)`);
  }
  return { configFile, peftType: type as PeftType, config };
}

export function readPeftAdapter(dir: string): PeftAdapterFiles {
  const { configFile, peftType, config } = readPeftAdapterConfig(dir);
  const weightsFile = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(weightsFile)) {
    const bin = existsSync(join(dir, 'adapter_model.bin')) ? ' (found adapter_model.bin: save it with safe_serialization=True)' : '';
    throw new Error(`${dir}: ${ADAPTER_WEIGHTS_FILE} is missing${bin}`);
  }
  return { dir, configFile, peftType, config, weightsFile, tensors: readSafetensors(weightsFile).tensors };
}

/** A positive integer field of adapter_config.json, or a clear error naming the file and field. */
export function peftIntField(files: { configFile: string; config: Record<string, unknown> }, field: string): number {
  const v = files.config[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new Error(`${files.configFile}: ${field} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Writes an adapter directory; keys of adapter_config.json sorted, as PEFT's `to_json_string` does. */
export function writePeftAdapter(
  dir: string, config: Record<string, unknown>, tensors: Map<string, { shape: number[]; data: Float32Array }>,
): void {
  mkdirSync(dir, { recursive: true });
  const sorted = Object.fromEntries(Object.keys(config).sort().map((k) => [k, config[k]]));
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(sorted, null, 2) + '\n');
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors);
}
