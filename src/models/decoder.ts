/**
 * One decoder-only transformer for GPT-2, OPT, BLOOM, LLaMA, Qwen2/3, Mistral, GPT-NeoX, Phi-3 and Gemma 2; the
 * differences are data (config.ts, architectures.ts). Parameters are `tf.Variable`s under their HF names.
 *
 * Legend: B batch, T new tokens, S total attended length (past + T), C hidden width, H heads, hs head size, V vocab.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import type { ModelConfig } from './config.js';
import { buildSpec, linearsOf, normsOf, parameterShapes, type LayerSpec, type LinearSpec, type ModelSpec, type NormSpec } from './architectures.js';
import { linear } from './ops/linear.js';
import { embedding } from './ops/embedding.js';
import { layerNorm, rmsNorm } from './ops/norms.js';
import { activate, gatedActivate } from './ops/activations.js';
import { attention, causalBias, causalMaskBias, fusedSelfAttention, fusedSelfAttentionAvailable } from './ops/attention.js';
import { alibiBias, applyRotary, positionsFromMask, rotaryTables } from './ops/positions.js';
import { ropeFrequencies } from './ops/rope.js';
import { fastTransposedProducts, matmul2d } from './ops/matmul.js';
import { projectToVocab } from './ops/vocab_projection.js';
import { lmHeadCrossEntropy, softcapLogits } from './ops/lm_head_loss.js';
import { nextTokenTargets } from './ops/loss.js';
import { installKernelOverrides } from './ops/kernel_overrides.js';
import * as lean from './ops/lean.js';
import { recomputed } from './ops/recompute.js';
import { gradientsRecording } from './ops/tidy_grad.js';
import { isPackedWeight, packTensor, packWeight, type PackedFormat, type PackedWeight } from './ops/packed_weight.js';
import { packedEmbedding, packedHeadLogits, packedLinear } from './ops/packed_linear.js';
import { ensurePackedKernels } from './ops/packed_kernels.js';
import type { HeadWeight } from './ops/lm_head_loss.js';
import type { LoraAdapter } from './lora.js';
import { withVirtualTokens, type VirtualTokenAdapter } from './virtual_tokens.js';
import type { GenerationDefaults } from './generation_config.js';
import { decodeAttention, type NativeKVCache } from '../engine/native_decode.js';
import { headLayout, nativeDecodeUnsupported } from './ops/decode_attention.js';

/** Keys and values of every layer for the positions seen so far: k/v [B, Hkv, S, hs]. */
export interface KVCache {
  keys: Tensor[];
  values: Tensor[];
}

export interface ForwardOptions {
  /** 0/1 [B, S] over past + new positions; all ones when omitted. */
  attentionMask?: Tensor;
  /** [B, T]. Defaults per architecture, as HF's forward computes them (see `defaultPositions`). */
  positionIds?: Tensor;
  cache?: KVCache;
  /** Return the updated cache (new tensors; the caller disposes the old one). */
  useCache?: boolean;
  /** Dropout on (with the rates in the config). */
  training?: boolean;
  /** Input embeddings [B, P, E] placed before those of `inputIds` (prompt tuning); mask and positions cover them. */
  prependEmbeddings?: Tensor;
  /** With prepended embeddings: return their hidden states too ([B, P + T, C], as PEFT's forward). */
  keepVirtual?: boolean;
  /**
   * Inference on the native backend (instead of `cache`): keys and values go into this cache in place, attention
   * runs in its kernel (engine/native_decode.ts), the mask is the cache's own and `attentionMask` is not read; its
   * length advances by T. Only where `nativeDecodeUnsupported()` is ''.
   */
  decodeCache?: NativeKVCache;
}

/** Rotary frequencies for the native decode kernel, shared by every layer of one forward. */
interface NativeDecodeStep {
  cache: NativeKVCache;
  positions: Tensor;
  rotary: { invFreq: Float32Array; scaling: number } | null;
}

export interface ForwardOutput {
  /** Final hidden states [B, T, C] (after the final norm / project_out). */
  hidden: Tensor;
  cache?: KVCache;
}

let checkpointingDefault = false;

/**
 * Process-wide default of `DecoderModel.gradientCheckpointing` (`--gradient_checkpointing`): every model created
 * afterwards starts with it. Only forwards under a gradient tape are affected, so frozen models never recompute.
 */
export function setGradientCheckpointingDefault(on: boolean): void {
  checkpointingDefault = on;
}

export class DecoderModel {
  readonly config: ModelConfig;
  readonly spec: ModelSpec;
  readonly params = new Map<string, tf.Variable>();
  /**
   * Frozen weight matrices packed in bf16/int8/nf4 (`packFrozen`); a name here is no longer in `params`. Such a model
   * is read-only: it trains only adapters, and is never saved or merged into.
   */
  readonly packed = new Map<string, PackedWeight>();
  /** LoRA adapter attached to this model (see lora.ts); skipped when `loraEnabled` is false. */
  lora: LoraAdapter | null = null;
  loraEnabled = true;
  /** Prefix- or prompt-tuning adapter (virtual_tokens.ts): P virtual positions before every sequence. */
  virtualTokens: VirtualTokenAdapter | null = null;
  /** The checkpoint's generation_config.json (decoding defaults, EOS ids), when it has one. */
  generationDefaults: GenerationDefaults | null = null;
  private dropoutRng = new Rng(0);
  /**
   * Activation recompute: under a gradient tape each block keeps only its input and output, and its forward runs
   * again during the backward pass (ops/recompute.ts). Same gradients, a fraction of the activation memory.
   */
  gradientCheckpointing = checkpointingDefault;
  /** While a recomputed block runs: the dropout seeds of its first run, recorded, then replayed by the second. */
  private seedLog: { seeds: number[]; replay: boolean; at: number } | null = null;

  /** `packed`: weight matrices already packed (see `packableWeights`), owned by the model from here on. */
  constructor(config: ModelConfig, weights: Map<string, Tensor>, packed?: Map<string, PackedWeight>) {
    this.config = config;
    this.spec = buildSpec(config);
    const shapes = parameterShapes(config, this.spec);
    const scope = uniqueScope('model');
    const missing = [...shapes.keys()].filter((n) => !weights.has(n) && !packed?.has(n));
    if (missing.length) throw new Error(`checkpoint lacks ${missing.length} parameter(s) the config needs: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
    for (const [name, info] of shapes) {
      const w = packed?.get(name) ?? weights.get(name)!;
      if (w.shape.join() !== info.shape.join()) {
        throw new Error(`parameter ${name} has shape [${w.shape}] but config.json implies [${info.shape}]`);
      }
      if (isPackedWeight(w)) this.packed.set(name, w);
      else this.params.set(name, tf.variable(w, true, `${scope}/${name}`));
    }
  }

  /**
   * Fresh weights initialised as HF does for a new model (normal(0, initializer_range), norms at 1, biases 0).
   * `packAs` (bf16/int8/nf4): a frozen model, each weight matrix packed as soon as it is drawn (as `packFrozen` would
   * pack it, with the same values), so no float32 copy of the whole model ever exists.
   */
  static fromConfig(config: ModelConfig, seed = 0, packAs?: PackedFormat): DecoderModel {
    const spec = buildSpec(config);
    const rng = new Rng(seed);
    const std = typeof config.raw.initializer_range === 'number' ? config.raw.initializer_range : typeof config.raw.init_std === 'number' ? config.raw.init_std : 0.02;
    const weights = new Map<string, Tensor>();
    const packed = new Map<string, PackedWeight>();
    if (packAs) ensurePackedKernels();
    const packable = packAs ? packableWeights(spec) : new Map<string, 0 | 1>();
    for (const [name, info] of parameterShapes(config, spec)) {
      const n = info.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (info.init === 'ones') data.fill(1);
      else if (info.init !== 'zeros') {
        // GPT-2 scales residual output projections by 1/√(2·n_layer) (its paper's modified init).
        const s = info.init === 'scaled_normal' && config.modelType === 'gpt2' ? std / Math.sqrt(2 * config.numLayers) : std;
        for (let i = 0; i < n; i++) data[i] = rng.normal() * s;
      }
      const axis = packable.get(name);
      if (packAs && axis !== undefined && info.shape.length === 2) packed.set(name, packWeight(data, info.shape as [number, number], packAs, axis));
      else weights.set(name, tf.tensor(data, info.shape));
    }
    const m = new DecoderModel(config, weights, packed);
    for (const t of weights.values()) t.dispose();
    return m;
  }

  setDropoutSeed(seed: number): void {
    this.dropoutRng = new Rng(seed);
  }

  private p(name: string): Tensor {
    const v = this.params.get(name);
    if (!v) throw new Error(this.packed.has(name) ? `parameter ${name} is packed (${this.packed.get(name)!.format}) and has no float32 tensor` : `no parameter ${name}`);
    return v;
  }

  /** A weight as stored: its float32 tensor, or its packed form. */
  private weightOf(name: string): Tensor | PackedWeight {
    return this.packed.get(name) ?? this.p(name);
  }

  /** The shape of a parameter, float32 or packed. */
  paramShape(name: string): number[] {
    const w = this.packed.get(name) ?? this.params.get(name);
    if (!w) throw new Error(`no parameter ${name}`);
    return [...w.shape];
  }

  /** Bytes the model's weights hold (float32 parameters plus packed bits and scales; adapters not counted). */
  weightBytes(): number {
    let n = 0;
    for (const v of this.params.values()) n += 4 * v.size;
    for (const w of this.packed.values()) n += w.bytes;
    return n;
  }

  /** The format frozen weights are held in: 'float32' unless `packFrozen` ran. */
  get frozenDtype(): 'float32' | PackedFormat {
    return this.packed.values().next().value?.format ?? 'float32';
  }

  /**
   * Packs every weight matrix (the projections, the token and position embeddings, an untied LM head) into
   * `format`, freeing each float32 tensor as it goes; norms and biases stay float32. For frozen models (a reference,
   * a reward model's backbone, the base under a LoRA or prefix adapter): packed weights take no gradient.
   */
  packFrozen(format: PackedFormat): void {
    if (this.packed.size) throw new Error(`the model's weights are already packed (${this.frozenDtype})`);
    for (const [name, axis] of packableWeights(this.spec)) {
      const v = this.params.get(name);
      if (!v || v.rank !== 2) continue;
      this.packed.set(name, packTensor(v, format, axis));
      this.params.delete(name);
      v.dispose();
    }
  }

  private norm(x: Tensor, n: NormSpec): Tensor {
    if (this.config.norm === 'rmsnorm') {
      const w = this.p(n.weight);
      return rmsNorm(x, this.config.normWeightOffset ? tf.add(w, this.config.normWeightOffset) : w, this.config.normEps);
    }
    return layerNorm(x, this.p(n.weight), n.bias ? this.p(n.bias) : null, this.config.normEps);
  }

  private dropout(x: Tensor, rate: number, training: boolean): Tensor {
    if (!training || rate <= 0) return x;
    return lean.dropout(x, rate, this.nextSeed(() => this.dropoutRng.seed()));
  }

  /** A dropout seed from `draw`, or, in a block's recompute, the one its first run drew. */
  private nextSeed(draw: () => number): number {
    const log = this.seedLog;
    if (!log) return draw();
    if (log.replay) {
      if (log.at >= log.seeds.length) throw new Error('recomputed block drew more dropout seeds than its first run');
      return log.seeds[log.at++]!;
    }
    const s = draw();
    log.seeds.push(s);
    return s;
  }

  /**
   * Weights stored [out, in], transposed once to [in, out] for a decoding session (see `holdTransposedWeights`):
   * otherwise every decode step transposes every such matrix again (LLaMA, OPT, BLOOM).
   */
  private decodingWeights: Map<string, Tensor> | null = null;

  /**
   * For generation: keeps the [out, in] weights transposed until the returned release function is called (one
   * extra copy of those weights meanwhile). Only for inference: the copies do not follow parameter updates.
   */
  holdTransposedWeights(): () => void {
    // With fast transpose flags the products read [out, in] weights as they are (linear.ts): nothing to hold.
    if (fastTransposedProducts()) return () => {};
    const held = new Map<string, Tensor>();
    for (const layer of this.spec.layers) {
      for (const l of linearsOf(layer)) if (l.layout === 'out_in' && !this.packed.has(`${l.module}.weight`)) held.set(l.module, tf.keep(tf.transpose(this.p(`${l.module}.weight`), [1, 0])));
    }
    this.decodingWeights = held;
    return () => {
      if (this.decodingWeights === held) this.decodingWeights = null;
      for (const t of held.values()) t.dispose();
    };
  }

  /** A projection, plus the LoRA update when an adapter targets it. */
  linear(x: Tensor, l: LinearSpec, training = false): Tensor {
    const held = l.layout === 'out_in' ? this.decodingWeights?.get(l.module) : undefined;
    const bias = l.bias ? this.p(`${l.module}.bias`) : null;
    const packed = this.packed.get(`${l.module}.weight`);
    const y = packed
      ? packedLinear(x, packed, bias, l.layout)
      : held
        ? linear(x, held, bias, 'in_out')
        : linear(x, this.p(`${l.module}.weight`), bias, l.layout);
    const lora = this.lora;
    if (lora && this.loraEnabled) {
      const seed = training && lora.config.dropout > 0 && lora.modules.has(l.module) ? this.nextSeed(() => lora.nextDropoutSeed()) : undefined;
      const delta = lora.delta(l.module, x, training, seed);
      if (delta) return lean.add(y, delta);
    }
    return y;
  }

  private embed(table: string, ids: Tensor): Tensor {
    const packed = this.packed.get(table);
    return packed ? packedEmbedding(packed, ids) : embedding(this.p(table), ids);
  }

  /** Why this model cannot decode through the native kernel here ('' when it can); see ForwardOptions.decodeCache. */
  nativeDecodeUnsupported(): string {
    return nativeDecodeUnsupported(this.config, this.spec.layers.map((l) => l.attn), !!this.virtualTokens);
  }

  /** Position ids HF's forward uses when none are given. */
  defaultPositions(B: number, T: number, past: number, attentionMask: Tensor | undefined): Tensor {
    if (this.config.positions === 'learned_offset2' && attentionMask) {
      // OPT: cumsum(mask)·mask − 1 over the whole mask, last T columns (padding lands on −1).
      return tf.tidy(() => {
        const m = tf.cast(attentionMask, 'int32');
        const pos = tf.sub(tf.mul(tf.cumsum(m, 1), m), tf.scalar(1, 'int32'));
        return tf.slice(pos, [0, past], [B, T]);
      });
    }
    return tf.tidy(() => tf.tile(tf.reshape(tf.range(past, past + T, 1, 'int32'), [1, T]), [B, 1]));
  }

  forward(inputIds: Tensor, opts: ForwardOptions = {}): ForwardOutput {
    installKernelOverrides();
    if (this.virtualTokens) opts = withVirtualTokens(this.virtualTokens, inputIds.shape[0]!, opts);
    const c = this.config;
    const training = opts.training ?? false;
    const prepended = opts.prependEmbeddings?.shape[1] ?? 0;
    const [B, T] = [inputIds.shape[0]!, inputIds.shape[1]! + prepended];
    const fast = opts.decodeCache ?? null;
    if (fast && (opts.cache || this.virtualTokens || prepended)) throw new Error('forward: decodeCache excludes cache, virtual tokens and prepended embeddings');
    const past = fast ? fast.length : opts.cache ? opts.cache.keys[0]!.shape[2]! : 0;
    const S = past + T;
    const mask = fast ? null : opts.attentionMask ?? tf.ones([B, S], 'int32');
    // Without a mask nothing is padded: the causal part of the bias alone ([1, 1, T, S]) is the whole bias.
    const noPadding = !opts.attentionMask;
    const positionIds = opts.positionIds ?? this.defaultPositions(B, T, past, opts.attentionMask);

    // 1. embeddings
    let x = this.embed(this.spec.embedTokens, inputIds); // (B, T, E)
    if (opts.prependEmbeddings) x = tf.concat([opts.prependEmbeddings, x], 1);
    if (c.embedScale !== 1) x = tf.mul(x, c.embedScale);
    if (this.spec.projectIn) x = this.linear(x, this.spec.projectIn);
    if (this.spec.embedPositions) {
      const offset = c.positions === 'learned_offset2' ? 2 : 0;
      const pos = offset ? tf.add(positionIds, tf.scalar(offset, 'int32')) : positionIds;
      x = lean.add(x, this.embed(this.spec.embedPositions, pos));
    }
    if (this.spec.embedNorm) x = this.norm(x, this.spec.embedNorm);
    x = this.dropout(x, c.embdDropout, training);

    // 2. attention bias (causal + padding, plus ALiBi; one per sliding window size) and rotary tables, shared by
    // every layer
    const biases = new Map<number | null, Tensor>();
    for (const w of fast ? [] : new Set(this.spec.layers.map((l) => l.window))) {
      let bias = noPadding ? causalBias(T, S, w) : causalMaskBias(mask!, T, w); // (B or 1, 1, T, S)
      if (c.positions === 'alibi') bias = tf.add(bias, alibiBias(mask!, c.numHeads)); // (B, H, T, S)
      biases.set(w, bias);
    }
    let rope: { cos: Tensor; sin: Tensor } | null = null;
    let rotary: NativeDecodeStep['rotary'] = null;
    if (c.rope) {
      // Only dynamic NTK reads the largest position; the others skip the device-to-host read.
      let maxPos = 0;
      if (c.rope.type === 'dynamic') {
        const m = tf.max(positionIds);
        maxPos = m.dataSync()[0]!;
        m.dispose();
      }
      const f = ropeFrequencies(c.rope, maxPos);
      if (fast) rotary = { invFreq: Float32Array.from(f.invFreq), scaling: f.scaling };
      else rope = rotaryTables(positionIds, f.invFreq, f.scaling);
    }
    const step: NativeDecodeStep | null = fast ? { cache: fast, positions: positionIds.dtype === 'int32' ? positionIds : tf.cast(positionIds, 'int32'), rotary } : null;

    // 3. blocks, each in its own tidy: under a gradient tape every forward intermediate would otherwise stay alive
    // until the backward pass ends; only what the gradients saved (and the block's output) is kept.
    const keys: Tensor[] = [];
    const values: Tensor[] = [];
    const recompute = this.gradientCheckpointing && !opts.useCache && gradientsRecording();
    this.spec.layers.forEach((layer, i) => {
      const past: [Tensor, Tensor] | null = opts.cache ? [opts.cache.keys[i]!, opts.cache.values[i]!] : null;
      const bias = biases.get(layer.window) ?? null;
      if (step) {
        x = tf.tidy(() => this.block(x, layer, bias, rope, null, training, false, { step, layer: i }).x);
        return;
      }
      if (recompute) {
        x = this.recomputedBlock(x, layer, bias!, rope, past, training);
        return;
      }
      const out = tf.tidy(() => this.block(x, layer, bias!, rope, past, training, opts.useCache ?? false));
      x = out.x;
      if (out.k && out.v) {
        keys.push(out.k);
        values.push(out.v);
      }
    });

    // 4. final norm
    if (this.spec.finalNorm) x = this.norm(x, this.spec.finalNorm);
    if (this.spec.projectOut) x = this.linear(x, this.spec.projectOut);
    if (prepended && !opts.keepVirtual) x = tf.slice(x, [0, prepended, 0], [B, T - prepended, -1]);
    if (fast) fast.length += T;
    return { hidden: x, cache: opts.useCache && !fast ? { keys, values } : undefined };
  }

  /**
   * `block` under activation recompute: differentiated through its input, the prefix keys/values of a prefix-tuning
   * cache, and the block's trainable parameters: with an adapter attached (LoRA, prefix or prompt tuning) the
   * adapter's, else every weight of the layer (the rule the stages' trainers follow).
   */
  private recomputedBlock(
    x: Tensor, layer: LayerSpec, bias: Tensor, rope: { cos: Tensor; sin: Tensor } | null, past: [Tensor, Tensor] | null,
    training: boolean,
  ): Tensor {
    const variables: tf.Variable[] = [];
    if (!this.lora && !this.virtualTokens) {
      const names = [
        ...linearsOf(layer).flatMap((l) => (l.bias ? [`${l.module}.weight`, `${l.module}.bias`] : [`${l.module}.weight`])),
        ...normsOf(layer, this.config).flatMap(([n]) => (n.bias ? [n.weight, n.bias] : [n.weight])),
      ];
      for (const n of names) variables.push(this.params.get(n)!);
    }
    if (this.lora && this.loraEnabled) {
      for (const l of linearsOf(layer)) {
        const m = this.lora.modules.get(l.module);
        if (m) variables.push(m.A, m.B);
      }
    }
    const inputs = past ? [x, past[0], past[1]] : [x];
    const kept = rope ? [bias, rope.cos, rope.sin] : [bias];
    const seeds: number[] = [];
    let runs = 0;
    return recomputed((ins, k) => {
      this.seedLog = { seeds, replay: runs++ > 0, at: 0 };
      try {
        const pastAgain: [Tensor, Tensor] | null = ins.length === 3 ? [ins[1]!, ins[2]!] : null;
        return this.block(ins[0]!, layer, k[0]!, k.length === 3 ? { cos: k[1]!, sin: k[2]! } : null, pastAgain, training, false).x;
      } finally {
        this.seedLog = null;
      }
    }, inputs, variables, kept);
  }

  /** One transformer block: attention and MLP, each with its residual (pre- or post-norm). */
  private block(
    x: Tensor, layer: LayerSpec, bias: Tensor | null, rope: { cos: Tensor; sin: Tensor } | null, past: [Tensor, Tensor] | null,
    training: boolean, useCache: boolean, native: { step: NativeDecodeStep; layer: number } | null = null,
  ): { x: Tensor; k?: Tensor; v?: Tensor } {
    const c = this.config;
    const h = c.preNorm ? this.norm(x, layer.ln1) : x;
    const attn = native ? { out: this.nativeSelfAttention(h, layer, native.step, native.layer) } : this.selfAttention(h, layer, bias!, rope, past, training, useCache);
    const { k, v } = attn as { k?: Tensor; v?: Tensor };
    let out = attn.out;
    if (layer.postAttnNorm) out = this.norm(out, layer.postAttnNorm);
    if (c.parallelResidual) {
      // GPT-NeoX: both branches read the block's input.
      const m = this.mlp(this.norm(x, layer.ln2), layer, training);
      const y = lean.add(lean.add(x, this.dropout(out, c.residDropout, training)), this.dropout(m, c.residDropout, training));
      return useCache ? { x: y, k, v } : { x: y };
    }
    let y = lean.add(x, this.dropout(out, c.residDropout, training));
    if (!c.preNorm) y = this.norm(y, layer.ln1);
    const h2 = c.preNorm ? this.norm(y, layer.ln2) : y;
    let m = this.mlp(h2, layer, training);
    if (layer.postMlpNorm) m = this.norm(m, layer.postMlpNorm);
    y = lean.add(y, this.dropout(m, c.residDropout, training));
    if (!c.preNorm) y = this.norm(y, layer.ln2);
    return useCache ? { x: y, k, v } : { x: y };
  }

  /** Self-attention through the native decode kernel: the projections' outputs go to it as they are. */
  private nativeSelfAttention(x: Tensor, layer: LayerSpec, step: NativeDecodeStep, index: number): Tensor {
    const c = this.config;
    const [B, T] = x.shape as [number, number];
    const [H, Hkv, hs] = [c.numHeads, c.numKvHeads, c.headDim];
    const a = layer.attn;
    let q: Tensor, k: Tensor, v: Tensor;
    if (a.kind === 'separate') {
      [q, k, v] = [this.linear(x, a.q), this.linear(x, a.k), this.linear(x, a.v)];
      if (a.qNorm && a.kNorm) {
        // Qwen3: RMSNorm over each head, on [B, T, heads, hs] (the kernel reads the same memory layout).
        q = this.norm(lean.reshape(q, [B, T, H, hs]), a.qNorm);
        k = this.norm(lean.reshape(k, [B, T, Hkv, hs]), a.kNorm);
      }
    } else {
      q = k = v = this.linear(x, a.qkv);
    }
    const y = decodeAttention(q, k, v, step.positions, step.cache, index, {
      heads: H, kvHeads: Hkv, headDim: hs, scale: c.attnScale, softcap: c.attnSoftcap, window: layer.window, rotary: step.rotary,
      layout: headLayout(a.kind, H, Hkv, hs),
    }); // (B, T, H·hs)
    return this.linear(y, a.o);
  }

  /**
   * Self-attention with no cache through the fused kernel (ops/attention.ts, fusedSelfAttention), the projections'
   * outputs read as they are: a fused q|k|v or per-head q, k, v goes in whole, unless rotary or q/k norms must
   * first change q and k; those then run on [B, T, heads, hs] (the same maps, over the last axis and per position).
   */
  private fusedSelfAttention(x: Tensor, layer: LayerSpec, bias: Tensor, rope: { cos: Tensor; sin: Tensor } | null, training: boolean): Tensor {
    const c = this.config;
    const [B, T] = x.shape as [number, number];
    const [H, Hkv, hs] = [c.numHeads, c.numKvHeads, c.headDim];
    const a = layer.attn;
    const drop = training && c.attnDropout > 0 ? { rate: c.attnDropout, seed: this.nextSeed(() => this.dropoutRng.seed()) } : null;
    const attend = (qkv: Tensor | [Tensor, Tensor, Tensor], kind: LayerSpec['attn']['kind']) =>
      fusedSelfAttention(qkv, headLayout(kind, H, Hkv, hs), { H, Hkv, hs }, bias, c.attnScale, c.attnSoftcap, drop); // (B, T, H·hs)
    const qkv = a.kind === 'separate' ? null : this.linear(x, a.qkv, training);
    if (qkv && !rope && !(a.qNorm && a.kNorm)) return this.linear(attend(qkv, a.kind), a.o, training);
    let q: Tensor, k: Tensor, v: Tensor;
    if (a.kind === 'separate') {
      [q, k, v] = [this.linear(x, a.q, training), this.linear(x, a.k, training), this.linear(x, a.v, training)];
    } else if (a.kind === 'fused_concat') {
      [q, k, v] = tf.split(qkv!, [H * hs, Hkv * hs, Hkv * hs], 2) as [Tensor, Tensor, Tensor];
    } else {
      [q, k, v] = tf.split(lean.reshape(qkv!, [B, T, H, 3, hs]), 3, 3).map((t) => lean.reshape(t, [B, T, H * hs])) as [Tensor, Tensor, Tensor];
    }
    // Rotary per position: [B, T, n, hs] seen as [B·T, n, 1, hs] against tables [B·T, 1, d].
    const tables = rope && [rope.cos, rope.sin].map((t) => lean.reshape(t.shape[0] === B ? t : tf.tile(t, [B, 1, 1]), [B * T, 1, t.shape[2]!]));
    const normed = !!(a.qNorm && a.kNorm); // as the tensor path: both or neither
    const prepare = (t: Tensor, n: number, norm: NormSpec | null) => {
      let y = lean.reshape(t, [B, T, n, hs]);
      if (normed && norm) y = this.norm(y, norm);
      if (tables) y = applyRotary(lean.reshape(y, [B * T, n, 1, hs]), tables[0]!, tables[1]!);
      return lean.reshape(y, [B, T, n * hs]);
    };
    return this.linear(attend([prepare(q, H, a.qNorm), prepare(k, Hkv, a.kNorm), v], 'separate'), a.o, training);
  }

  private selfAttention(
    x: Tensor, layer: LayerSpec, bias: Tensor, rope: { cos: Tensor; sin: Tensor } | null,
    past: [Tensor, Tensor] | null, training: boolean, useCache = false,
  ): { out: Tensor; k?: Tensor; v?: Tensor } {
    if (!past && !useCache && x.dtype === 'float32' && fusedSelfAttentionAvailable()) return { out: this.fusedSelfAttention(x, layer, bias, rope, training) };
    const c = this.config;
    const [B, T] = x.shape as [number, number];
    const H = c.numHeads;
    const Hkv = c.numKvHeads;
    const hs = c.headDim;
    const heads = (t: Tensor, n: number) => tf.transpose(lean.reshape(t, [B, T, n, hs]), [0, 2, 1, 3]); // (B, n, T, hs)
    let q: Tensor, k: Tensor, v: Tensor;
    const a = layer.attn;
    if (a.kind === 'separate') {
      q = heads(this.linear(x, a.q, training), H);
      k = heads(this.linear(x, a.k, training), Hkv);
      v = heads(this.linear(x, a.v, training), Hkv);
    } else if (a.kind === 'fused_concat') {
      const qkv = this.linear(x, a.qkv, training); // (B, T, (H + 2·Hkv)·hs): q | k | v
      const [qq, kk, vv] = tf.split(qkv, [H * hs, Hkv * hs, Hkv * hs], 2) as [Tensor, Tensor, Tensor];
      [q, k, v] = [heads(qq, H), heads(kk, Hkv), heads(vv, Hkv)];
    } else {
      const qkv = lean.reshape(this.linear(x, a.qkv, training), [B, T, H, 3, hs]); // per head: q, k, v
      [q, k, v] = tf.split(qkv, 3, 3).map((t) => tf.transpose(lean.reshape(t, [B, T, H, hs]), [0, 2, 1, 3])) as [Tensor, Tensor, Tensor];
    }
    if (a.qNorm && a.kNorm) {
      q = this.norm(q, a.qNorm);
      k = this.norm(k, a.kNorm);
    }
    if (rope) {
      q = applyRotary(q, rope.cos, rope.sin);
      k = applyRotary(k, rope.cos, rope.sin);
    }
    if (past) {
      k = tf.concat([past[0], k], 2);
      v = tf.concat([past[1], v], 2);
    }
    const drop = training && c.attnDropout > 0 ? { rate: c.attnDropout, seed: this.nextSeed(() => this.dropoutRng.seed()) } : null;
    const y = attention(q, k, v, bias, c.attnScale, c.attnSoftcap, drop); // (B, H, T, hs)
    const merged = lean.reshape(tf.transpose(y, [0, 2, 1, 3]), [B, T, H * hs]);
    return { out: this.linear(merged, a.o, training), k, v };
  }

  private mlp(x: Tensor, layer: LayerSpec, training: boolean): Tensor {
    const m = layer.mlp;
    if (m.kind === 'plain') return this.linear(activate(this.linear(x, m.fcIn, training), this.config.activation), m.fcOut, training);
    if (m.kind === 'gated_fused') {
      const I = this.config.intermediateSize;
      const [gate, up] = tf.split(this.linear(x, m.gateUp, training), [I, I], -1) as [Tensor, Tensor]; // gate | up
      return this.linear(gatedActivate(gate, up, this.config.activation), m.down, training);
    }
    const g = this.linear(x, m.gate, training);
    return this.linear(gatedActivate(g, this.linear(x, m.up, training), this.config.activation), m.down, training);
  }

  /**
   * Logits [B, T, V] from hidden states. `headT` is the head weight already transposed to [C, V] (generation passes
   * it once per call instead of transposing V×C values every step).
   */
  logits(hidden: Tensor, headT?: Tensor | null): Tensor {
    const [B, T, C] = hidden.shape as [number, number, number];
    const h = lean.reshape(hidden, [B * T, C]);
    const packedHead = this.packed.get(this.spec.lmHead);
    let flat = packedHead ? packedHeadLogits(h, packedHead) : headT ? matmul2d(h, headT) : projectToVocab(h, this.p(this.spec.lmHead)); // (B*T, V)
    const cap = this.config.finalSoftcap;
    if (cap) flat = softcapLogits(flat, cap);
    return lean.reshape(flat, [B, T, flat.shape[1]!]);
  }

  /**
   * Causal-LM loss straight from hidden states [B, T, C]: position t predicts labels[t+1] (IGNORE_INDEX ignored),
   * as `causalLmLoss(this.logits(hidden), labels)` but without the [B·T, V] logits (lmHeadCrossEntropy), which at a
   * 50k vocabulary and 8×512 tokens would not fit the wasm heap.
   */
  lmLoss(hidden: Tensor, labels: Tensor): Tensor {
    return tf.tidy(() => {
      const [B, T, C] = hidden.shape as [number, number, number];
      return lmHeadCrossEntropy(lean.reshape(hidden, [B * T, C]), this.lmHeadWeight(), nextTokenTargets(labels, T), undefined, this.config.finalSoftcap);
    });
  }

  /** Whether training leaves the LM head as it is: an adapter (LoRA, prefix or prompt tuning) trains instead. */
  headFrozen(): boolean {
    return this.lora !== null || this.virtualTokens !== null;
  }

  /** The LM head weight [V, C] (the tied embedding where the head is tied), float32 or packed; owned by the model. */
  lmHeadWeight(): HeadWeight {
    return this.weightOf(this.spec.lmHead);
  }

  /** The LM head weight transposed to [C, V] (the caller disposes it), or null when the head is packed. */
  lmHeadTransposed(): Tensor | null {
    // With fast transpose flags the head product reads [V, C] as it is (projectToVocab).
    if (this.packed.has(this.spec.lmHead) || fastTransposedProducts()) return null;
    return tf.transpose(this.p(this.spec.lmHead), [1, 0]);
  }

  /** Parameters that exist in the checkpoint (a tied lm_head is not separate); packed ones are not among them. */
  namedParameters(): [string, tf.Variable][] {
    return [...this.params.entries()];
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
    for (const w of this.packed.values()) w.dispose();
    this.packed.clear();
    this.lora?.dispose();
    this.virtualTokens?.dispose();
  }
}

/**
 * The weights `packFrozen` packs, each with its output-channel axis (int8's scales): every projection's weight, the
 * token and position embeddings and an untied LM head.
 */
export function packableWeights(spec: ModelSpec): Map<string, 0 | 1> {
  const targets = new Map<string, 0 | 1>();
  const linears = [spec.projectIn, spec.projectOut, ...spec.layers.flatMap((l) => linearsOf(l))].filter((l): l is LinearSpec => !!l);
  for (const l of linears) targets.set(`${l.module}.weight`, l.layout === 'out_in' ? 0 : 1);
  for (const name of [spec.embedTokens, spec.embedPositions, spec.lmHead]) if (name) targets.set(name, 0);
  return targets;
}

export { positionsFromMask };
