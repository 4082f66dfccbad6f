/**
 * Fused kernels of the `native` backend (native/engine/fused_kernels.cc), registered as tfjs kernels of that backend
 * only: norms, activations and row-wise cross-entropy that the tfjs graph otherwise spells as several elementwise
 * and reduction ops, each one more pass over memory. They have no gradients of their own: the ops in
 * src/models/ops wrap a forward kernel and its gradient kernel in a tf.customGrad, and on other backends keep
 * their decomposition (`fusedKernel(name)` says which to take).
 */
import { tf } from './tf.js';
import { rowMajorStrides } from './shape.js';

/** The kernels' names (inputs → outputs; attrs in braces). */
export const FUSED = {
  /** {x [.., C], w [C]} {eps} → [y, rstd [rows]] */
  rmsNorm: 'RlhfRmsNorm',
  /** {dy, x, w, rstd} → [dx, dw] */
  rmsNormGrad: 'RlhfRmsNormGrad',
  /** {x, w, b?} {eps} → [y, mean [rows], rstd [rows]] */
  layerNorm: 'RlhfLayerNorm',
  /** {dy, x, w, mean, rstd} {bias: boolean} → [dx, dw, db?] */
  layerNormGrad: 'RlhfLayerNormGrad',
  /** {x} {kind} → y = act(x) */
  activation: 'RlhfActivation',
  /** {x, dy} {kind} → dx */
  activationGrad: 'RlhfActivationGrad',
  /** {gate, up} {kind} → act(gate)·up */
  gatedActivation: 'RlhfGatedActivation',
  /** {gate, up, dy} {kind} → [dgate, dup] */
  gatedActivationGrad: 'RlhfGatedActivationGrad',
  /** {x [d0, d1, T, S], bias broadcastable to x} {scale} → softmax over S of x·scale + bias */
  biasedSoftmax: 'RlhfBiasedSoftmax',
  /** {p, dp} {scale} → p ⊙ (dp − Σ_last dp ⊙ p)·scale (the softmax gradient, scaled) */
  softmaxGrad: 'RlhfSoftmaxGrad',
  /** {x [B, H, T, hs], cos, sin [1 | B, T, hs]} {transpose} → x·cos + rotate_half(x)·sin (transpose: its adjoint) */
  rotary: 'RlhfRotary',
  /** {} {shape, keepProb, state: Alea's [c, s0, s1, s2]} → tf.dropout's scaled mask on ones of `shape` */
  dropoutMask: 'RlhfDropoutMask',
  /**
   * {logits [R, V], targets int32 [R], weights [R]} {withGrad, inPlace} → [Σ w·(lse − picked) as a scalar, grad [R, V]?];
   * inPlace: grad is written over the logits' values (the caller reads the logits no more)
   */
  crossEntropyRows: 'RlhfCrossEntropyRows',
  /**
   * {logits [R, V], targets int32 [R], d? [R, 2]} {inPlace} → without d [R, 2]: log p(target) and the entropy per row;
   * with d (the gradient of those two columns) the logits' gradient [R, V]; inPlace: written over the logits' values
   */
  logProbEntropyRows: 'RlhfLogProbEntropyRows',
  /**
   * {q, k?, v?, bias, mask?} {dims [B, T, S, H, Hkv, hs], layouts [12], scale, softcap} → [out [B, T, H·hs], probs
   * [B, H, T, S]]: q, k and v [B, ·, ·] (k and v absent: all three in q) read where `layouts` puts each head
   * (train_attention.cc); bias broadcastable to [B, H, T, S]; mask the dropout mask [B, H, T, S]
   */
  trainAttention: 'RlhfTrainAttention',
  /** {dy, q, k?, v?, bias, probs, mask?} {dims, layouts, scale, softcap} → [dq, dk, dv], or [d(q)] when k and v are in q */
  trainAttentionGrad: 'RlhfTrainAttentionGrad',
  /**
   * {param, grad, m?, v?} {reals [c1, beta1, c2, beta2, stepScale, epsTerm, keep]} → [param', m', v']: AdamW's
   * update in one pass, the same float32 operations as trainer/adamw.ts's tensor ops (optimizer_kernels.cc)
   */
  adamW: 'RlhfAdamW',
} as const;

/** Activation kinds of the activation kernels. */
export const FUSED_ACTIVATION = { silu: 0, gelu_tanh: 1, gelu: 2, relu: 3 } as const;

/** RLHF_FUSED_KERNELS=0 keeps the tfjs decompositions on the native backend too (for comparisons). */
export const FUSED_KERNELS_ENV = 'RLHF_FUSED_KERNELS';

/** Whether the active backend has fused kernel `name` (and they are not switched off). */
export function fusedKernel(name: string): boolean {
  return process.env[FUSED_KERNELS_ENV] !== '0' && tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** The native addon's entry points these kernels call (see fused_kernels.cc for the formulas). */
export interface FusedAddon {
  rmsNorm(x: Float32Array, w: Float32Array, rows: number, C: number, eps: number, y: Float32Array, rstd: Float32Array): void;
  rmsNormGrad(dy: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, rows: number, C: number, dx: Float32Array, dw: Float32Array): void;
  layerNorm(x: Float32Array, w: Float32Array, b: Float32Array | null, rows: number, C: number, eps: number, y: Float32Array, mean: Float32Array, rstd: Float32Array): void;
  layerNormGrad(dy: Float32Array, x: Float32Array, w: Float32Array, mean: Float32Array, rstd: Float32Array, rows: number, C: number, dx: Float32Array, dw: Float32Array, db: Float32Array | null): void;
  activation(kind: number, x: Float32Array, out: Float32Array): void;
  activationGrad(kind: number, x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  gatedActivation(kind: number, gate: Float32Array, up: Float32Array, out: Float32Array): void;
  gatedActivationGrad(kind: number, gate: Float32Array, up: Float32Array, dy: Float32Array, dgate: Float32Array, dup: Float32Array): void;
  biasedSoftmax(x: Float32Array, lead: number[], T: number, S: number, scale: number, bias: Float32Array, biasStrides: number[], out: Float32Array): void;
  softmaxGrad(p: Float32Array, dp: Float32Array, rows: number, S: number, scale: number, dx: Float32Array): void;
  rotary(x: Float32Array, B: number, H: number, T: number, hs: number, cos: Float32Array, sin: Float32Array, tableBatch: number, transpose: boolean, out: Float32Array): void;
  dropoutMask(state: number[], keepProb: number, out: Float32Array): void;
  crossEntropyRows(logits: Float32Array, rows: number, V: number, targets: Int32Array, weights: Float32Array, grad: Float32Array | null): number;
  logProbEntropyRows(logits: Float32Array, rows: number, V: number, targets: Int32Array, d: Float32Array | null, out: Float32Array): void;
  adamW(p: Float32Array, g: Float32Array, m: Float32Array | null, v: Float32Array | null, reals: number[], pOut: Float32Array, mOut: Float32Array, vOut: Float32Array): void;
  trainAttention(q: Float32Array, k: Float32Array, v: Float32Array, dims: number[], layouts: number[], bias: Float32Array, biasStrides: number[], reals: number[], mask: Float32Array | null, out: Float32Array, probs: Float32Array): void;
  trainAttentionGrad(dy: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, dims: number[], layouts: number[], bias: Float32Array, biasStrides: number[], probs: Float32Array, mask: Float32Array | null, reals: number[], dq: Float32Array, dk: Float32Array, dv: Float32Array): void;
}

/** How the kernels reach the backend's arrays (native_backend.ts). */
export interface FusedMemory {
  /** The float32 values of a tensor (a copy when it is stored as another array type). */
  floats(t: tf.TensorInfo): Float32Array;
  ints(t: tf.TensorInfo): Int32Array;
  /** A new float32 output and its (uninitialised) values. */
  output(shape: number[]): { info: tf.TensorInfo; values: Float32Array };
  /** A float32 output over `values` as they lie (an input's, overwritten in place; the backend counts the alias). */
  view(shape: number[], values: Float32Array): tf.TensorInfo;
}

type Args = { inputs: tf.NamedTensorInfoMap; attrs: tf.NamedAttrMap };
type Kernel = (args: Args, m: FusedMemory) => tf.TensorInfo | tf.TensorInfo[];

function need(cond: boolean, kernel: string, what: string): void {
  if (!cond) throw new Error(`${kernel}: ${what}`);
}

/** Rows and width of a [.., C] tensor normalised over its last axis, checked against its weight [C]. */
function rowsOf(kernel: string, x: tf.TensorInfo, w: tf.TensorInfo): { rows: number; C: number } {
  const C = x.shape[x.shape.length - 1] ?? 1;
  need(w.shape.length === 1 && w.shape[0] === C, kernel, `weight [${w.shape}] does not match the last axis of [${x.shape}]`);
  need(x.dtype === 'float32' && w.dtype === 'float32', kernel, 'takes float32 tensors');
  return { rows: C === 0 ? 0 : tf.util.sizeFromShape(x.shape) / C, C };
}

function kindOf(kernel: string, attrs: tf.NamedAttrMap): number {
  const kind = attrs.kind as number;
  need((Object.values(FUSED_ACTIVATION) as number[]).includes(kind), kernel, `unknown activation kind ${String(kind)}`);
  return kind;
}

/** Strides of a bias of rank ≤ 4 broadcast to `shape` [d0, d1, T, S] (0 on its broadcast axes). */
function broadcastStrides(kernel: string, bias: tf.TensorInfo, shape: number[]): number[] {
  need(bias.shape.length <= 4 && bias.dtype === 'float32', kernel, `bias must be float32 of rank ≤ 4, got ${bias.dtype} [${bias.shape}]`);
  const bshape = [...new Array<number>(4 - bias.shape.length).fill(1), ...bias.shape];
  need(bshape.every((d, i) => d === 1 || d === shape[i]), kernel, `bias [${bias.shape}] does not broadcast to [${shape}]`);
  return rowMajorStrides(bshape).map((st, i) => (bshape[i] === 1 ? 0 : st));
}

/** The attention kernels' shapes, checked: dims [B, T, S, H, Hkv, hs], and [B, H, T, S] of probs and mask. */
function attentionDims(kernel: string, attrs: tf.NamedAttrMap, tensors: (tf.TensorInfo | undefined)[]): { dims: number[]; cells: number[] } {
  const dims = attrs.dims as number[];
  const layouts = attrs.layouts as number[];
  need(Array.isArray(dims) && dims.length === 6 && Array.isArray(layouts) && layouts.length === 12, kernel, 'needs dims [B, T, S, H, Hkv, hs] and 12 layout numbers');
  for (const t of tensors) if (t) need(t.dtype === 'float32', kernel, 'takes float32 tensors');
  const [B, T, S, H] = dims as [number, number, number, number];
  return { dims, cells: [B, H, T, S] };
}

function sameShape(kernel: string, a: tf.TensorInfo, b: tf.TensorInfo): void {
  need(a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]), kernel, `shapes [${a.shape}] and [${b.shape}] differ`);
}

export function fusedKernels(addon: FusedAddon): Record<string, Kernel> {
  return {
    [FUSED.rmsNorm]: ({ inputs, attrs }, m) => {
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const { rows, C } = rowsOf(FUSED.rmsNorm, x, w);
      const y = m.output(x.shape);
      const rstd = m.output([rows]);
      addon.rmsNorm(m.floats(x), m.floats(w), rows, C, attrs.eps as number, y.values, rstd.values);
      return [y.info, rstd.info];
    },
    [FUSED.rmsNormGrad]: ({ inputs }, m) => {
      const { dy, x, w, rstd } = inputs as Record<string, tf.TensorInfo>;
      const { rows, C } = rowsOf(FUSED.rmsNormGrad, x!, w!);
      sameShape(FUSED.rmsNormGrad, dy!, x!);
      const dx = m.output(x!.shape);
      const dw = m.output([C]);
      addon.rmsNormGrad(m.floats(dy!), m.floats(x!), m.floats(w!), m.floats(rstd!), rows, C, dx.values, dw.values);
      return [dx.info, dw.info];
    },
    [FUSED.layerNorm]: ({ inputs, attrs }, m) => {
      const { x, w, b } = inputs as Record<string, tf.TensorInfo | undefined>;
      const { rows, C } = rowsOf(FUSED.layerNorm, x!, w!);
      if (b) need(b.shape.length === 1 && b.shape[0] === C, FUSED.layerNorm, `bias [${b.shape}] does not match width ${C}`);
      const y = m.output(x!.shape);
      const mean = m.output([rows]);
      const rstd = m.output([rows]);
      addon.layerNorm(m.floats(x!), m.floats(w!), b ? m.floats(b) : null, rows, C, attrs.eps as number, y.values, mean.values, rstd.values);
      return [y.info, mean.info, rstd.info];
    },
    [FUSED.layerNormGrad]: ({ inputs, attrs }, m) => {
      const { dy, x, w, mean, rstd } = inputs as Record<string, tf.TensorInfo>;
      const { rows, C } = rowsOf(FUSED.layerNormGrad, x!, w!);
      sameShape(FUSED.layerNormGrad, dy!, x!);
      const dx = m.output(x!.shape);
      const dw = m.output([C]);
      const db = attrs.bias ? m.output([C]) : null;
      addon.layerNormGrad(m.floats(dy!), m.floats(x!), m.floats(w!), m.floats(mean!), m.floats(rstd!), rows, C, dx.values, dw.values, db ? db.values : null);
      return db ? [dx.info, dw.info, db.info] : [dx.info, dw.info];
    },
    [FUSED.activation]: ({ inputs, attrs }, m) => {
      const x = inputs.x as tf.TensorInfo;
      const y = m.output(x.shape);
      addon.activation(kindOf(FUSED.activation, attrs), m.floats(x), y.values);
      return y.info;
    },
    [FUSED.activationGrad]: ({ inputs, attrs }, m) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      sameShape(FUSED.activationGrad, dy, x);
      const dx = m.output(x.shape);
      addon.activationGrad(kindOf(FUSED.activationGrad, attrs), m.floats(x), m.floats(dy), dx.values);
      return dx.info;
    },
    [FUSED.gatedActivation]: ({ inputs, attrs }, m) => {
      const { gate, up } = inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
      sameShape(FUSED.gatedActivation, gate, up);
      const y = m.output(gate.shape);
      addon.gatedActivation(kindOf(FUSED.gatedActivation, attrs), m.floats(gate), m.floats(up), y.values);
      return y.info;
    },
    [FUSED.gatedActivationGrad]: ({ inputs, attrs }, m) => {
      const { gate, up, dy } = inputs as Record<string, tf.TensorInfo>;
      sameShape(FUSED.gatedActivationGrad, gate!, up!);
      sameShape(FUSED.gatedActivationGrad, gate!, dy!);
      const dg = m.output(gate!.shape);
      const du = m.output(gate!.shape);
      addon.gatedActivationGrad(kindOf(FUSED.gatedActivationGrad, attrs), m.floats(gate!), m.floats(up!), m.floats(dy!), dg.values, du.values);
      return [dg.info, du.info];
    },
    [FUSED.biasedSoftmax]: ({ inputs, attrs }, m) => {
      const { x, bias } = inputs as { x: tf.TensorInfo; bias: tf.TensorInfo };
      need(x.shape.length === 4 && x.dtype === 'float32', FUSED.biasedSoftmax, `x must be float32 [d0, d1, T, S], got ${x.dtype} [${x.shape}]`);
      const strides = broadcastStrides(FUSED.biasedSoftmax, bias, x.shape);
      const [d0, d1, T, S] = x.shape as [number, number, number, number];
      const y = m.output(x.shape);
      addon.biasedSoftmax(m.floats(x), [d0, d1], T, S, attrs.scale as number, m.floats(bias), strides, y.values);
      return y.info;
    },
    [FUSED.softmaxGrad]: ({ inputs, attrs }, m) => {
      const { p, dp } = inputs as { p: tf.TensorInfo; dp: tf.TensorInfo };
      sameShape(FUSED.softmaxGrad, p, dp);
      need(p.shape.length > 0, FUSED.softmaxGrad, 'takes tensors of rank ≥ 1');
      const S = p.shape[p.shape.length - 1]!;
      const dx = m.output(p.shape);
      addon.softmaxGrad(m.floats(p), m.floats(dp), S === 0 ? 0 : tf.util.sizeFromShape(p.shape) / S, S, attrs.scale as number, dx.values);
      return dx.info;
    },
    [FUSED.rotary]: ({ inputs, attrs }, m) => {
      const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
      need(x!.shape.length === 4 && x!.dtype === 'float32', FUSED.rotary, `x must be float32 [B, H, T, hs], got ${x!.dtype} [${x!.shape}]`);
      const [B, H, T, hs] = x!.shape as [number, number, number, number];
      sameShape(FUSED.rotary, cos!, sin!);
      const tb = cos!.shape[0]!;
      need(cos!.shape.length === 3 && (tb === 1 || tb === B) && cos!.shape[1] === T && cos!.shape[2] === hs && hs % 2 === 0, FUSED.rotary, `tables [${cos!.shape}] do not fit x [${x!.shape}]`);
      const y = m.output(x!.shape);
      addon.rotary(m.floats(x!), B, H, T, hs, m.floats(cos!), m.floats(sin!), tb, !!attrs.transpose, y.values);
      return y.info;
    },
    [FUSED.dropoutMask]: ({ attrs }, m) => {
      const shape = attrs.shape as number[];
      const state = attrs.state as number[];
      const keep = attrs.keepProb as number;
      need(Array.isArray(state) && state.length === 4 && keep > 0 && keep <= 1, FUSED.dropoutMask, 'needs a generator state [c, s0, s1, s2] and keepProb in (0, 1]');
      const y = m.output(shape);
      addon.dropoutMask(state, keep, y.values);
      return y.info;
    },
    [FUSED.crossEntropyRows]: ({ inputs, attrs }, m) => {
      const { logits, targets, weights } = inputs as Record<string, tf.TensorInfo>;
      need(logits!.shape.length === 2 && logits!.dtype === 'float32', FUSED.crossEntropyRows, `logits must be float32 [rows, V], got [${logits!.shape}]`);
      const [R, V] = logits!.shape as [number, number];
      need(targets!.dtype === 'int32' && targets!.shape.length === 1 && targets!.shape[0] === R, FUSED.crossEntropyRows, `targets must be int32 [${R}], got ${targets!.dtype} [${targets!.shape}]`);
      need(weights!.shape.length === 1 && weights!.shape[0] === R, FUSED.crossEntropyRows, `weights must be [${R}], got [${weights!.shape}]`);
      const z = m.floats(logits!);
      // inPlace: the gradient overwrites the logits (the caller's last use of them), which then stay in cache for
      // the head's products and need no second [rows, V] buffer.
      const grad = !attrs.withGrad ? null : attrs.inPlace ? { info: m.view([R, V], z), values: z } : m.output([R, V]);
      const total = addon.crossEntropyRows(z, R, V, m.ints(targets!), m.floats(weights!), grad ? grad.values : null);
      const loss = m.output([]);
      loss.values[0] = total;
      return grad ? [loss.info, grad.info] : [loss.info];
    },
    [FUSED.logProbEntropyRows]: ({ inputs, attrs }, m) => {
      const { logits, targets, d } = inputs as Record<string, tf.TensorInfo | undefined>;
      need(logits!.shape.length === 2 && logits!.dtype === 'float32', FUSED.logProbEntropyRows, `logits must be float32 [rows, V], got [${logits!.shape}]`);
      const [R, V] = logits!.shape as [number, number];
      need(targets!.dtype === 'int32' && targets!.shape.length === 1 && targets!.shape[0] === R, FUSED.logProbEntropyRows, `targets must be int32 [${R}], got ${targets!.dtype} [${targets!.shape}]`);
      need(!d || (d.shape.length === 2 && d.shape[0] === R && d.shape[1] === 2), FUSED.logProbEntropyRows, `d must be [${R}, 2], got [${d?.shape}]`);
      const z = m.floats(logits!);
      const out = !d ? m.output([R, 2]) : attrs.inPlace ? { info: m.view([R, V], z), values: z } : m.output([R, V]);
      addon.logProbEntropyRows(z, R, V, m.ints(targets!), d ? m.floats(d) : null, out.values);
      return out.info;
    },
    [FUSED.adamW]: ({ inputs, attrs }, m) => {
      const { param, grad, m: m0, v: v0 } = inputs as Record<string, tf.TensorInfo | undefined>;
      for (const t of [grad, m0, v0]) if (t) sameShape(FUSED.adamW, param!, t);
      need([param, grad, m0, v0].every((t) => !t || t.dtype === 'float32'), FUSED.adamW, 'takes float32 tensors');
      need(!m0 === !v0, FUSED.adamW, 'm and v come together');
      const reals = attrs.reals as number[];
      need(Array.isArray(reals) && reals.length === 7, FUSED.adamW, 'needs reals [c1, beta1, c2, beta2, stepScale, epsTerm, keep]');
      const [p1, m1, v1] = [m.output(param!.shape), m.output(param!.shape), m.output(param!.shape)];
      addon.adamW(m.floats(param!), m.floats(grad!), m0 ? m.floats(m0) : null, v0 ? m.floats(v0) : null, reals, p1.values, m1.values, v1.values);
      return [p1.info, m1.info, v1.info];
    },
    [FUSED.trainAttention]: ({ inputs, attrs }, m) => {
      const { q, k, v, bias, mask } = inputs as Record<string, tf.TensorInfo | undefined>;
      const { dims, cells } = attentionDims(FUSED.trainAttention, attrs, [q, k, v, bias, mask]);
      if (mask) need(mask.shape.reduce((a, b) => a * b, 1) === tf.util.sizeFromShape(cells), FUSED.trainAttention, `mask [${mask.shape}] is not [${cells}]`);
      const [B, T, , H, , hs] = dims as number[];
      const qv = m.floats(q!);
      const out = m.output([B!, T!, H! * hs!]);
      const probs = m.output(cells);
      addon.trainAttention(qv, k ? m.floats(k) : qv, v ? m.floats(v) : qv, dims, attrs.layouts as number[], m.floats(bias!),
        broadcastStrides(FUSED.trainAttention, bias!, cells), [attrs.scale as number, (attrs.softcap as number) || 0],
        mask ? m.floats(mask) : null, out.values, probs.values);
      return [out.info, probs.info];
    },
    [FUSED.trainAttentionGrad]: ({ inputs, attrs }, m) => {
      const { dy, q, k, v, bias, probs, mask } = inputs as Record<string, tf.TensorInfo | undefined>;
      const { dims, cells } = attentionDims(FUSED.trainAttentionGrad, attrs, [dy, q, k, v, bias, probs, mask]);
      need(tf.util.sizeFromShape(probs!.shape) === tf.util.sizeFromShape(cells), FUSED.trainAttentionGrad, `probs [${probs!.shape}] is not [${cells}]`);
      const qv = m.floats(q!);
      const dq = m.output(q!.shape);
      // One input holding q, k and v: one gradient, every element of which the kernel writes (zeroed first all the same).
      if (!k) dq.values.fill(0);
      const dk = k ? m.output(k.shape) : dq;
      const dv = v ? m.output(v.shape) : dq;
      addon.trainAttentionGrad(m.floats(dy!), qv, k ? m.floats(k) : qv, v ? m.floats(v) : qv, dims, attrs.layouts as number[],
        m.floats(bias!), broadcastStrides(FUSED.trainAttentionGrad, bias!, cells), m.floats(probs!),
        mask ? m.floats(mask) : null, [attrs.scale as number, (attrs.softcap as number) || 0], dq.values, dk.values, dv.values);
      return k ? [dq.info, dk.info, dv.info] : [dq.info];
    },
  };
}
