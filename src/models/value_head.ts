/**
 * Value head (hidden → 1) for reward models and critics, stored as `value_head.weight` [1, C] and `value_head.bias` [1].
 */
import { tf, type Tensor } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { uniqueScope } from '../engine/names.js';
import { linear } from './ops/linear.js';

export class ValueHead {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(weight: Tensor, bias: Tensor) {
    const scope = uniqueScope('value_head');
    this.weight = tf.variable(weight, true, `${scope}/value_head.weight`);
    this.bias = tf.variable(bias, true, `${scope}/value_head.bias`);
  }

  /** A new head: weight ~ N(0, 1/(C+1)) as ColossalChat's RewardModel initialises it, bias 0. */
  static create(hiddenSize: number, seed = 0): ValueHead {
    const rng = new Rng(seed);
    const w = new Float32Array(hiddenSize);
    const std = 1 / (hiddenSize + 1);
    for (let i = 0; i < hiddenSize; i++) w[i] = rng.normal() * std;
    const [weight, bias] = [tf.tensor2d(w, [1, hiddenSize]), tf.zeros([1])];
    const head = new ValueHead(weight, bias); // the variables hold their own references to the data
    weight.dispose();
    bias.dispose();
    return head;
  }

  static fromTensors(t: Map<string, Tensor>): ValueHead {
    const w = t.get('value_head.weight');
    const b = t.get('value_head.bias');
    if (!w || !b) throw new Error('value head tensors value_head.weight / value_head.bias are missing');
    return new ValueHead(w, b);
  }

  /** hidden [B, T, C] → values [B, T]. */
  forward(hidden: Tensor): Tensor {
    const [B, T] = hidden.shape as [number, number];
    return tf.reshape(linear(hidden, this.weight, this.bias, 'out_in'), [B, T]);
  }

  tensors(): Map<string, Tensor> {
    return new Map<string, Tensor>([['value_head.weight', this.weight], ['value_head.bias', this.bias]]);
  }

  variables(): tf.Variable[] {
    return [this.weight, this.bias];
  }

  dispose(): void {
    this.weight.dispose();
    this.bias.dispose();
  }
}
