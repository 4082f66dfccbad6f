import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { FUSED, FUSED_ACTIVATION, fusedKernel } from '../../engine/native_fused.js';

export type Activation = 'gelu_new' | 'gelu' | 'relu' | 'silu';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

const GELU_A = 0.044715;

/** 2u = 2·√(2/π)·(x + a·x³), the argument for which 0.5·(1 + tanh(u)) = sigmoid(2u). */
function twiceGeluInner(x: Tensor): Tensor {
  return tf.mul(tf.mul(x, tf.add(tf.mul(tf.square(x), GELU_A), 1)), 2 * SQRT_2_OVER_PI);
}

/**
 * GELU, tanh approximation (GPT-2's `gelu_new`, BLOOM's bloom_gelu): 0.5·x·(1 + tanh(u)) written as x·sigmoid(2u)
 * (XNNPACK's sigmoid is ~20× faster than its tanh, and x³ needs no Pow), with the gradient written out:
 * d/dx = s + x·s·(1 − s)·2·√(2/π)·(1 + 3a·x²), s = sigmoid(2u). Only x is saved; s is recomputed.
 */
const geluTanh = tf.customGrad((x, save) => {
  (save as tf.GradSaveFunc)([x as Tensor]);
  return {
    value: tf.mul(x as Tensor, tf.sigmoid(twiceGeluInner(x as Tensor))),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const sx = saved[0]!;
      const s = tf.sigmoid(twiceGeluInner(sx));
      const x2 = tf.square(sx);
      const slope = tf.mul(tf.add(tf.mul(x2, 3 * GELU_A), 1), 2 * SQRT_2_OVER_PI); // d(2u)/dx
      const ds = tf.mul(tf.mul(s, tf.sub(1, s)), slope);
      return tf.mul(dy, tf.add(s, tf.mul(sx, ds)));
    }),
  };
}) as unknown as (x: Tensor) => Tensor;

/** Exact GELU, 0.5·x·(1 + erf(x/√2)). */
function geluErf(x: Tensor): Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** SiLU x·sigmoid(x) (LLaMA), gradient s + x·s·(1 − s) written out; saves x only. */
const silu = tf.customGrad((x, save) => {
  (save as tf.GradSaveFunc)([x as Tensor]);
  return {
    value: tf.mul(x as Tensor, tf.sigmoid(x as Tensor)),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const sx = saved[0]!;
      const s = tf.sigmoid(sx);
      return tf.mul(dy, tf.mul(s, tf.add(1, tf.mul(sx, tf.sub(1, s)))));
    }),
  };
}) as unknown as (x: Tensor) => Tensor;

/** Activations with a fused native kernel, and its kind number. */
// relu too: tfjs differentiates it as dy·step(x), two passes and a [rows, ffn] temporary where one will do.
const FUSED_KINDS: Partial<Record<Activation, number>> = { silu: FUSED_ACTIVATION.silu, gelu_new: FUSED_ACTIVATION.gelu_tanh, gelu: FUSED_ACTIVATION.gelu, relu: FUSED_ACTIVATION.relu };

/** act(x) in one kernel, its gradient in another (saves x only), as the custom gradients above. */
const fusedActivation = (kind: number) => tf.customGrad((x, save) => {
  (save as tf.GradSaveFunc)([x as Tensor]);
  return {
    value: tf.engine().runKernel(FUSED.activation, { x: x as Tensor }, { kind }) as Tensor,
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => tf.engine().runKernel(FUSED.activationGrad, { x: saved[0]!, dy }, { kind }) as Tensor),
  };
}) as unknown as (x: Tensor) => Tensor;

/** act(gate)·up in one kernel (SwiGLU, GeGLU), its two gradients in another; saves gate and up. */
const fusedGated = (kind: number) => tf.customGrad((gate, up, save) => {
  (save as tf.GradSaveFunc)([gate as Tensor, up as Tensor]);
  return {
    value: tf.engine().runKernel(FUSED.gatedActivation, { gate: gate as Tensor, up: up as Tensor }, { kind }) as Tensor,
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => tf.engine().runKernel(FUSED.gatedActivationGrad, { gate: saved[0]!, up: saved[1]!, dy }, { kind }) as Tensor[]),
  };
}) as unknown as (gate: Tensor, up: Tensor) => Tensor;

const fusedActivations = new Map<number, (x: Tensor) => Tensor>();
const fusedGatedActivations = new Map<number, (gate: Tensor, up: Tensor) => Tensor>();

/** The fused kind for x on this backend, or null for the decomposition. */
function fusedKind(x: Tensor, kind: Activation, kernel: string): number | null {
  const k = FUSED_KINDS[kind];
  return k !== undefined && x.dtype === 'float32' && fusedKernel(kernel) ? k : null;
}

/** act(gate)·up for gated MLPs (LLaMA's SwiGLU): one fused kernel where the backend has it. */
export function gatedActivate(gate: Tensor, up: Tensor, kind: Activation): Tensor {
  const k = fusedKind(gate, kind, FUSED.gatedActivation);
  if (k === null || up.dtype !== 'float32' || !tf.util.arraysEqual(gate.shape, up.shape)) return tf.mul(activate(gate, kind), up);
  let f = fusedGatedActivations.get(k);
  if (!f) fusedGatedActivations.set(k, (f = fusedGated(k)));
  return f(gate, up);
}

export function activate(x: Tensor, kind: Activation): Tensor {
  const k = fusedKind(x, kind, FUSED.activation);
  if (k !== null) {
    let f = fusedActivations.get(k);
    if (!f) fusedActivations.set(k, (f = fusedActivation(k)));
    return f(x);
  }
  switch (kind) {
    case 'gelu_new': return geluTanh(x);
    case 'gelu': return geluErf(x);
    case 'relu': return tf.relu(x);
    case 'silu': return silu(x);
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
