/**
 * Model shapes the benchmark builds from config alone (no download): GPT-2 124M, and the small GPT-2 the demo model
 * uses. Either can be overridden piecewise from the command line.
 */
import { normalizeConfig, type ModelConfig } from '../models/config.js';

export const PRESETS = {
  /** GPT-2 small, as on the hub (openai-community/gpt2). */
  'gpt2-124m': { n_layer: 12, n_head: 12, n_embd: 768, n_positions: 1024, vocab_size: 50257 },
  /** The size of the demo model: 6 layers, 384 wide, GPT-2 vocabulary. */
  small: { n_layer: 6, n_head: 6, n_embd: 384, n_positions: 1024, vocab_size: 50257 },
} as const;
export type PresetName = keyof typeof PRESETS;

export interface ShapeOverrides {
  layers?: number;
  width?: number;
  heads?: number;
  vocab?: number;
}

export function benchConfig(preset: PresetName, o: ShapeOverrides = {}): ModelConfig {
  const p = PRESETS[preset];
  if (!p) throw new Error(`unknown --model "${preset}" (choose one of: ${Object.keys(PRESETS).join(', ')})`);
  return normalizeConfig({
    model_type: 'gpt2',
    n_layer: o.layers ?? p.n_layer,
    n_head: o.heads ?? p.n_head,
    n_embd: o.width ?? p.n_embd,
    n_positions: p.n_positions,
    vocab_size: o.vocab ?? p.vocab_size,
  }, `--model ${preset}`);
}

/** Parameter count from the config's shapes (tied head counted once). */
export function describeConfig(c: ModelConfig, params: number): string {
  return `gpt2 L${c.numLayers} C${c.hiddenSize} H${c.numHeads} V${c.vocabSize} (${(params / 1e6).toFixed(1)}M params)`;
}
