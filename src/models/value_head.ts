/**
 * Value head (hidden → 1) for reward models and critics: transformers' `<Family>ForSequenceClassification` score head
 * with `num_labels` 1, a `score.weight` [1, C] and no bias, which is how new heads are made and saved.
 *
 * Directories written before that layout hold `value_head.weight` [1, C] and `value_head.bias` [1]; they still load,
 * their bias kept (a bias shifts every value by the same constant; saved in the score layout it goes into config.json,
 * see src/reward/layout.ts).
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import { linear } from './ops/linear.js';

/** The head's tensor in transformers' sequence-classification layout. */
export const SCORE_WEIGHT = 'score.weight';
/** A bias some custom sequence classifiers carry (transformers' own have none). */
export const SCORE_BIAS = 'score.bias';
/** The tensors of the layout this project wrote before. */
export const LEGACY_VALUE_HEAD_WEIGHT = 'value_head.weight';
export const LEGACY_VALUE_HEAD_BIAS = 'value_head.bias';

export class ValueHead {
  readonly weight: tf.Variable;
  /** Null for a score head (transformers' layout); a [1] bias for heads loaded from the legacy layout. */
  readonly bias: tf.Variable | null;

  constructor(weight: Tensor, bias: Tensor | null = null) {
    const scope = uniqueScope('value_head');
    this.weight = tf.variable(weight, true, `${scope}/score.weight`);
    this.bias = bias ? tf.variable(bias, true, `${scope}/score.bias`) : null;
  }

  /** A new head without bias: weight ~ N(0, 1/(C+1)) as ColossalChat's RewardModel initialises it. */
  static create(hiddenSize: number, seed = 0): ValueHead {
    const rng = new Rng(seed);
    const w = new Float32Array(hiddenSize);
    const std = 1 / (hiddenSize + 1);
    for (let i = 0; i < hiddenSize; i++) w[i] = rng.normal() * std;
    const weight = tf.tensor2d(w, [1, hiddenSize]);
    const head = new ValueHead(weight); // the variable holds its own reference to the data
    weight.dispose();
    return head;
  }

  /**
   * From checkpoint tensors: `score.weight` (plus a bias given separately, from config.json), or the legacy
   * `value_head.weight` + `value_head.bias`.
   */
  static fromTensors(t: Map<string, Tensor>, scoreBias = 0): ValueHead {
    const score = t.get(SCORE_WEIGHT);
    if (score) {
      if (score.shape.length !== 2 || score.shape[0] !== 1) {
        throw new Error(`${SCORE_WEIGHT} is [${score.shape}]; a reward model has num_labels 1, so [1, hidden_size]`);
      }
      const stored = t.get(SCORE_BIAS);
      if (stored && stored.size !== 1) throw new Error(`${SCORE_BIAS} is [${stored.shape}]; a reward model has num_labels 1, so [1]`);
      const total = scoreBias + (stored ? stored.dataSync()[0]! : 0);
      if (!stored && scoreBias === 0) return new ValueHead(score);
      const b = tf.tensor1d([total]);
      const head = new ValueHead(score, b);
      b.dispose();
      return head;
    }
    // value_head.safetensors beside a PEFT adapter: the weight, and the bias when the head has one
    const w = t.get(LEGACY_VALUE_HEAD_WEIGHT);
    if (!w) throw new Error(`no value head: neither ${SCORE_WEIGHT} nor ${LEGACY_VALUE_HEAD_WEIGHT}`);
    return new ValueHead(w, t.get(LEGACY_VALUE_HEAD_BIAS) ?? null);
  }

  /** hidden [B, T, C] → values [B, T]. */
  forward(hidden: Tensor): Tensor {
    const [B, T] = hidden.shape as [number, number];
    return tf.reshape(linear(hidden, this.weight, this.bias, 'out_in'), [B, T]);
  }

  /** The bias as a number (0 without one). */
  biasValue(): number {
    return this.bias ? this.bias.dataSync()[0]! : 0;
  }

  /** The head as value_head.safetensors beside a PEFT adapter holds it: the weight, and the bias if there is one. */
  legacyTensors(): Map<string, { shape: number[]; data: Float32Array }> {
    const out = new Map([[LEGACY_VALUE_HEAD_WEIGHT, { shape: [...this.weight.shape], data: this.weight.dataSync() as Float32Array }]]);
    if (this.bias) out.set(LEGACY_VALUE_HEAD_BIAS, { shape: [1], data: Float32Array.of(this.biasValue()) });
    return out;
  }

  /** What training updates, by name. */
  namedVariables(): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [[LEGACY_VALUE_HEAD_WEIGHT, this.weight]];
    if (this.bias) out.push([LEGACY_VALUE_HEAD_BIAS, this.bias]);
    return out;
  }

  variables(): tf.Variable[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  /** An independent copy (a critic initialised from a reward model's head). */
  clone(): ValueHead {
    const w = tf.clone(this.weight);
    const b = this.bias ? tf.clone(this.bias) : null;
    const head = new ValueHead(w, b);
    w.dispose();
    b?.dispose();
    return head;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}
