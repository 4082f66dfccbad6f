/**
 * Prefix tuning as PEFT's `PREFIX_TUNING` (P-tuning v2 without the reparameterising MLP): P trainable key/value
 * positions in every layer's attention, the frozen model unchanged.
 *
 * PEFT's table `prompt_embeddings` [P, L·2·Hkv·hs] is viewed as [P, L·2, Hkv, hs]; along the second axis entry 2l is
 * layer l's keys and 2l+1 its values (PEFT's permute([2, 0, 3, 1, 4]).split(2)). The keys are used as stored: no
 * rotary embedding touches them. With grouped-query attention PEFT sizes the table by the KV heads, recording
 * `num_attention_heads` = Hkv and `token_dim` = Hkv·hs in adapter_config.json.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import { peftIntField, type PeftAdapterFiles } from '../hub/peft_files.js';
import type { ModelConfig } from './config.js';
import type { KVCache } from './decoder.js';
import { normalTable, type VirtualTokenAdapter } from './virtual_tokens.js';

export class PrefixTuningAdapter implements VirtualTokenAdapter {
  readonly kind = 'prefix' as const;
  readonly peftType = 'PREFIX_TUNING' as const;
  readonly numVirtualTokens: number;
  /** [P, L·2·Hkv·hs] */
  readonly table: tf.Variable;
  private readonly layers: number;
  private readonly kvHeads: number;
  private readonly headDim: number;
  private readonly hiddenSize: number;

  private constructor(config: ModelConfig, numVirtualTokens: number, data: Float32Array) {
    this.numVirtualTokens = numVirtualTokens;
    this.layers = config.numLayers;
    this.kvHeads = config.numKvHeads;
    this.headDim = config.headDim;
    this.hiddenSize = config.hiddenSize;
    const width = this.layers * 2 * this.kvHeads * this.headDim;
    this.table = tf.tidy(() => tf.variable(tf.tensor2d(data, [numVirtualTokens, width]), true, `${uniqueScope('prefix_tuning')}/prompt_embeddings`));
  }

  /** A fresh adapter, standard-normal as PEFT's `PrefixEncoder` embedding starts. */
  static create(config: ModelConfig, numVirtualTokens: number, seed = 0): PrefixTuningAdapter {
    const width = config.numLayers * 2 * config.numKvHeads * config.headDim;
    return new PrefixTuningAdapter(config, numVirtualTokens, normalTable(numVirtualTokens, width, new Rng(seed)));
  }

  /** From PEFT's files, every field checked against the model. */
  static fromPeft(files: PeftAdapterFiles, config: ModelConfig): PrefixTuningAdapter {
    const f = files.configFile;
    const P = peftIntField(files, 'num_virtual_tokens');
    const expect = (field: string, want: number, what: string) => {
      const got = files.config[field];
      if (got !== undefined && got !== null && got !== want) throw new Error(`${f}: ${field} is ${JSON.stringify(got)} but the model has ${want} ${what}`);
    };
    expect('num_layers', config.numLayers, 'layers');
    expect('num_attention_heads', config.numKvHeads, 'key/value heads');
    expect('token_dim', config.numKvHeads * config.headDim, 'key/value channels per layer (key/value heads × head size)');
    expect('num_transformer_submodules', 1, 'transformer stack (a decoder-only model)');
    // A prefix_projection adapter saves the MLP's output table, which is what inference needs; it is kept as a table.
    const t = files.tensors.get('prompt_embeddings');
    if (!t) throw new Error(`${files.weightsFile}: no prompt_embeddings tensor (has: ${[...files.tensors.keys()].join(', ') || 'nothing'})`);
    const width = config.numLayers * 2 * config.numKvHeads * config.headDim;
    if (t.shape.join() !== `${P},${width}`) {
      throw new Error(`${files.weightsFile}: prompt_embeddings is [${t.shape}] but ${P} virtual tokens over ${config.numLayers} layers × 2 × ${config.numKvHeads} KV heads × ${config.headDim} need [${P},${width}]`);
    }
    return new PrefixTuningAdapter(config, P, t.data as Float32Array);
  }

  prefixCache(batch: number): KVCache {
    const [L, H, P, hs] = [this.layers, this.kvHeads, this.numVirtualTokens, this.headDim];
    const perLayer = tf.unstack(tf.transpose(tf.reshape(this.table, [P, L * 2, H, hs]), [1, 2, 0, 3])); // 2L × [H, P, hs]
    const batched = perLayer.map((t) => tf.tile(tf.expandDims(t, 0), [batch, 1, 1, 1])); // [B, H, P, hs]
    return { keys: batched.filter((_, i) => i % 2 === 0), values: batched.filter((_, i) => i % 2 === 1) };
  }

  inputEmbeddings(): Tensor | null {
    return null;
  }

  trainableVariables(): tf.Variable[] {
    return [this.table];
  }

  peftConfig(baseModel: string): Record<string, unknown> {
    return {
      auto_mapping: null, base_model_name_or_path: baseModel, encoder_hidden_size: this.hiddenSize, inference_mode: true,
      init_weights: null, modules_to_save: null, num_attention_heads: this.kvHeads, num_layers: this.layers,
      num_transformer_submodules: 1, num_virtual_tokens: this.numVirtualTokens, peft_type: this.peftType,
      prefix_projection: false, revision: null, task_type: 'CAUSAL_LM', token_dim: this.kvHeads * this.headDim,
    };
  }

  peftTensors(): Map<string, { shape: number[]; data: Float32Array }> {
    return new Map([['prompt_embeddings', { shape: this.table.shape, data: this.table.dataSync() as Float32Array }]]);
  }

  dispose(): void {
    this.table.dispose();
  }
}
