/**
 * Prompt tuning as PEFT's `PROMPT_TUNING`: P trainable input embeddings [P, E] (`prompt_embeddings`) placed before
 * every sequence's token embeddings; the frozen model unchanged. PEFT's forward returns logits for the virtual
 * positions too and labels them −100, so the last virtual position learns to predict the first real token.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import { peftIntField, type PeftAdapterFiles } from '../hub/peft_files.js';
import type { ModelConfig } from './config.js';
import { normalTable, type VirtualTokenAdapter } from './virtual_tokens.js';

/** PEFT's `prompt_tuning_init`: RANDOM (standard normal) or SAMPLE_VOCAB (rows of the token embedding). */
export type PromptTuningInit = 'RANDOM' | 'SAMPLE_VOCAB';

export class PromptTuningAdapter implements VirtualTokenAdapter {
  readonly kind = 'prompt' as const;
  readonly peftType = 'PROMPT_TUNING' as const;
  readonly numVirtualTokens: number;
  /** [P, E] */
  readonly table: tf.Variable;
  readonly init: PromptTuningInit;
  private readonly layers: number;
  private readonly heads: number;

  private constructor(config: ModelConfig, numVirtualTokens: number, data: Float32Array, width: number, init: PromptTuningInit) {
    this.numVirtualTokens = numVirtualTokens;
    this.init = init;
    this.layers = config.numLayers;
    this.heads = config.numHeads;
    this.table = tf.tidy(() => tf.variable(tf.tensor2d(data, [numVirtualTokens, width]), true, `${uniqueScope('prompt_tuning')}/prompt_embeddings`));
  }

  /**
   * A fresh adapter over a token embedding [V, E]: RANDOM draws a standard normal (torch.nn.Embedding's init, PEFT's
   * default); SAMPLE_VOCAB copies the rows of P tokens drawn uniformly from the vocabulary.
   */
  static create(config: ModelConfig, tokenEmbedding: Tensor, numVirtualTokens: number, init: PromptTuningInit = 'RANDOM', seed = 0): PromptTuningAdapter {
    const [V, E] = tokenEmbedding.shape as [number, number];
    const rng = new Rng(seed);
    let data: Float32Array;
    if (init === 'SAMPLE_VOCAB') {
      const ids = Array.from({ length: numVirtualTokens }, () => rng.int(V));
      data = tf.tidy(() => tf.gather(tokenEmbedding, tf.tensor1d(ids, 'int32')).dataSync() as Float32Array);
    } else data = normalTable(numVirtualTokens, E, rng);
    return new PromptTuningAdapter(config, numVirtualTokens, data, E, init);
  }

  /** From PEFT's files; `embedWidth` is the width of the model's token embedding (E). */
  static fromPeft(files: PeftAdapterFiles, config: ModelConfig, embedWidth: number): PromptTuningAdapter {
    const f = files.configFile;
    const P = peftIntField(files, 'num_virtual_tokens');
    const td = files.config.token_dim;
    if (td !== undefined && td !== null && td !== embedWidth) throw new Error(`${f}: token_dim is ${JSON.stringify(td)} but the model's token embeddings are ${embedWidth} wide`);
    const subs = files.config.num_transformer_submodules;
    if (subs !== undefined && subs !== null && subs !== 1) throw new Error(`${f}: num_transformer_submodules is ${JSON.stringify(subs)}; a decoder-only model has 1`);
    const t = files.tensors.get('prompt_embeddings');
    if (!t) throw new Error(`${files.weightsFile}: no prompt_embeddings tensor (has: ${[...files.tensors.keys()].join(', ') || 'nothing'})`);
    if (t.shape.join() !== `${P},${embedWidth}`) {
      throw new Error(`${files.weightsFile}: prompt_embeddings is [${t.shape}] but ${P} virtual tokens of width ${embedWidth} need [${P},${embedWidth}]`);
    }
    const init = files.config.prompt_tuning_init === 'SAMPLE_VOCAB' ? 'SAMPLE_VOCAB' : 'RANDOM';
    return new PromptTuningAdapter(config, P, t.data as Float32Array, embedWidth, init);
  }

  prefixCache(): null {
    return null;
  }

  inputEmbeddings(batch: number): Tensor {
    return tf.tile(tf.expandDims(this.table, 0), [batch, 1, 1]);
  }

  trainableVariables(): tf.Variable[] {
    return [this.table];
  }

  peftConfig(baseModel: string): Record<string, unknown> {
    return {
      auto_mapping: null, base_model_name_or_path: baseModel, inference_mode: true, modules_to_save: null,
      num_attention_heads: this.heads, num_layers: this.layers, num_transformer_submodules: 1,
      num_virtual_tokens: this.numVirtualTokens, peft_type: this.peftType, prompt_tuning_init: this.init,
      prompt_tuning_init_text: null, revision: null, task_type: 'CAUSAL_LM', token_dim: this.table.shape[1],
      tokenizer_kwargs: null, tokenizer_name_or_path: null,
    };
  }

  peftTensors(): Map<string, { shape: number[]; data: Float32Array }> {
    return new Map([['prompt_embeddings', { shape: this.table.shape, data: this.table.dataSync() as Float32Array }]]);
  }

  dispose(): void {
    this.table.dispose();
  }
}
