/**
 * LoRA as PEFT defines it: for each targeted projection W, y = W x + (α/r) · B A dropout(x), A [r, in] (Kaiming-uniform),
 * B [out, r] (zeros). Parameter names, adapter_config.json and the merge follow PEFT so adapters move both ways.
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import { linear } from './ops/linear.js';
import { linearsOf, type LinearSpec, type ModelSpec } from './architectures.js';
import type { ModelType } from './config.js';

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** PEFT `target_modules`: last name components (`c_attn`, `q_proj`), a regex string, or `all-linear`. */
  targetModules: string[] | string;
}

/** Default targets per architecture, as PEFT's own defaults map them. */
export const DEFAULT_LORA_TARGETS: Record<ModelType, string[]> = {
  gpt2: ['c_attn'],
  opt: ['q_proj', 'v_proj'],
  bloom: ['query_key_value'],
  llama: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  qwen3: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  gpt_neox: ['query_key_value'],
  phi3: ['qkv_proj'],
  gemma2: ['q_proj', 'v_proj'],
};

export function allLinears(spec: ModelSpec): LinearSpec[] {
  return spec.layers.flatMap(linearsOf);
}

export function matchesTarget(module: string, targets: string[] | string): boolean {
  if (typeof targets === 'string') {
    if (targets === 'all-linear') return true;
    return new RegExp(`^(?:${targets})$`).test(module);
  }
  return targets.some((t) => module === t || module.endsWith(`.${t}`));
}

export class LoraAdapter {
  readonly config: LoraConfig;
  readonly scaling: number;
  /** module → { A [r, in], B [out, r] } */
  readonly modules = new Map<string, { A: tf.Variable; B: tf.Variable }>();
  private rng: Rng;

  /** Prefix of the tfjs variable names of this adapter. */
  readonly scope = uniqueScope('lora');

  constructor(config: LoraConfig, seed = 0) {
    this.config = config;
    this.scaling = config.alpha / config.r;
    this.rng = new Rng(seed);
  }

  /** A fresh adapter over the model's projections that match the targets. */
  static create(spec: ModelSpec, config: LoraConfig, seed = 0): LoraAdapter {
    const ad = new LoraAdapter(config, seed);
    const rng = new Rng(seed);
    const targets = allLinears(spec).filter((l) => matchesTarget(l.module, config.targetModules));
    if (!targets.length) {
      const names = [...new Set(allLinears(spec).map((l) => l.module.split('.').pop()))];
      throw new Error(`LoRA target_modules ${JSON.stringify(config.targetModules)} match no projection of this model (it has: ${names.join(', ')})`);
    }
    for (const l of targets) {
      const bound = 1 / Math.sqrt(l.inDim); // kaiming_uniform_(a=√5) on [r, in]
      const a = new Float32Array(config.r * l.inDim);
      for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
      // tidy frees the initial values (a variable keeps its own reference to the data; tidy never disposes variables)
      ad.modules.set(l.module, {
        A: tf.tidy(() => tf.variable(tf.tensor2d(a, [config.r, l.inDim]), true, `${ad.scope}/${l.module}.lora_A.weight`)),
        B: tf.tidy(() => tf.variable(tf.zeros([l.outDim, config.r]), true, `${ad.scope}/${l.module}.lora_B.weight`)),
      });
    }
    return ad;
  }

  /** Restarts the dropout stream, so a trainer that reseeds per step draws the same masks after a resume. */
  setDropoutSeed(seed: number): void {
    this.rng = new Rng(seed);
  }

  /** The next seed of the dropout stream. */
  nextDropoutSeed(): number {
    return this.rng.seed();
  }

  /**
   * The LoRA term for `module` applied to x, or null when the module is not targeted. `seed`: of the dropout mask
   * (default: the next of the adapter's stream; a recomputed block passes the one its first run used).
   */
  delta(module: string, x: Tensor, training: boolean, seed?: number): Tensor | null {
    const m = this.modules.get(module);
    if (!m) return null;
    const xin = training && this.config.dropout > 0 ? tf.dropout(x, this.config.dropout, undefined, seed ?? this.rng.seed()) : x;
    return tf.mul(linear(linear(xin, m.A, null, 'out_in'), m.B, null, 'out_in'), this.scaling);
  }

  trainableVariables(): tf.Variable[] {
    return [...this.modules.values()].flatMap((m) => [m.A, m.B]);
  }

  /** Named as PEFT saves them: `base_model.model.<module>.lora_A.weight`. */
  peftTensors(): Map<string, { shape: number[]; data: Float32Array }> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [mod, { A, B }] of this.modules) {
      out.set(`base_model.model.${mod}.lora_A.weight`, { shape: A.shape, data: A.dataSync() as Float32Array });
      out.set(`base_model.model.${mod}.lora_B.weight`, { shape: B.shape, data: B.dataSync() as Float32Array });
    }
    return out;
  }

  /** W ← W + scaling · (B A), transposed for Conv1D-layout weights. */
  mergeInto(params: Map<string, tf.Variable>, spec: ModelSpec): void {
    const layouts = new Map(allLinears(spec).map((l) => [l.module, l.layout]));
    for (const [mod, { A, B }] of this.modules) {
      const w = params.get(`${mod}.weight`);
      if (!w) {
        throw new Error(`LoRA module ${mod} has no float32 base weight to merge into (a base packed by --frozen_dtype/--load_in_8bit is never merged: save the adapter unmerged, then merge it into the float32 checkpoint with convert)`);
      }
      tf.tidy(() => {
        let d = tf.mul(tf.matMul(B, A), this.scaling); // (out, in)
        if (layouts.get(mod) === 'in_out') d = tf.transpose(d);
        w.assign(tf.add(w, d));
      });
    }
  }

  dispose(): void {
    for (const { A, B } of this.modules.values()) {
      A.dispose();
      B.dispose();
    }
    this.modules.clear();
  }
}
