import { tf, type Tensor } from '../../engine/tf.js';

export type Activation = 'gelu_new' | 'gelu' | 'relu' | 'silu';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation (GPT-2's `gelu_new`, BLOOM's bloom_gelu). */
function geluTanh(x: Tensor): Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** Exact GELU, 0.5·x·(1 + erf(x/√2)). */
function geluErf(x: Tensor): Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

export function activate(x: Tensor, kind: Activation): Tensor {
  switch (kind) {
    case 'gelu_new': return geluTanh(x);
    case 'gelu': return geluErf(x);
    case 'relu': return tf.relu(x);
    case 'silu': return tf.mul(x, tf.sigmoid(x));
  }
}

/** Maps config.json activation names to ours; unknown names are an error naming the known ones. */
export function parseActivation(name: string): Activation {
  const map: Record<string, Activation> = {
    gelu_new: 'gelu_new', gelu_pytorch_tanh: 'gelu_new', gelu_fast: 'gelu_new', bloom_gelu: 'gelu_new',
    gelu: 'gelu', relu: 'relu', silu: 'silu', swish: 'silu',
  };
  const a = map[name];
  if (!a) throw new Error(`Unsupported activation "${name}" (supported: ${Object.keys(map).join(', ')})`);
  return a;
}
