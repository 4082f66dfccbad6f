import { tf, type Tensor } from '../../engine/tf.js';
import { tidyGrad } from './tidy_grad.js';
import { columnSums } from './matmul.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';

/**
 * The fused forms (one native kernel forward, one backward; saved: x, w and the per-row statistics), chosen when
 * the backend has them; the same formulas as the decompositions below.
 */
const fusedRmsNorm = (eps: number) => tf.customGrad((x, w, save) => {
  const [y, rstd] = tf.engine().runKernel(FUSED.rmsNorm, { x: x as Tensor, w: w as Tensor }, { eps }) as Tensor[];
  (save as tf.GradSaveFunc)([x as Tensor, w as Tensor, rstd!]);
  return {
    value: y!,
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sx, sw, srstd] = saved as [Tensor, Tensor, Tensor];
      return tf.engine().runKernel(FUSED.rmsNormGrad, { dy, x: sx, w: sw, rstd: srstd }, {}) as Tensor[];
    }),
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

const fusedLayerNorm = (eps: number, withBias: boolean) => tf.customGrad((...args: unknown[]) => {
  const [x, w, b] = args as Tensor[];
  const save = args[args.length - 1] as tf.GradSaveFunc;
  const [y, mean, rstd] = tf.engine().runKernel(FUSED.layerNorm, withBias ? { x: x!, w: w!, b: b! } : { x: x!, w: w! }, { eps }) as Tensor[];
  save([x!, w!, mean!, rstd!]);
  return {
    value: y!,
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sx, sw, smean, srstd] = saved as [Tensor, Tensor, Tensor, Tensor];
      return tf.engine().runKernel(FUSED.layerNormGrad, { dy, x: sx, w: sw, mean: smean, rstd: srstd }, { bias: withBias }) as Tensor[];
    }),
  };
}) as unknown as (...xs: Tensor[]) => Tensor;

const fusedByKey = new Map<string, (...xs: Tensor[]) => Tensor>();

function fused<F extends (...xs: Tensor[]) => Tensor>(key: string, make: () => F): F {
  let f = fusedByKey.get(key);
  if (!f) fusedByKey.set(key, (f = make()));
  return f as F;
}

/**
 * LayerNorm over the last axis (biased variance, as torch), with the gradient written out (llm.c's
 * layernorm_backward) instead of differentiating nine elementwise ops:
 *   x̂ = (x − mean)·rstd, y = x̂·w + b
 *   dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·w;  dw = Σ dy·x̂;  db = Σ dy
 * Saved: x̂ and rstd (not x).
 */
function layerNormCore(x: Tensor, eps: number): { xhat: Tensor; rstd: Tensor } {
  const axis = x.rank - 1;
  const centered = tf.sub(x, tf.mean(x, axis, true));
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), axis, true), eps));
  return { xhat: tf.mul(centered, rstd), rstd };
}

function inputGrad(dxhat: Tensor, xhat: Tensor, rstd: Tensor): Tensor {
  const axis = xhat.rank - 1;
  const m1 = tf.mean(dxhat, axis, true);
  const m2 = tf.mean(tf.mul(dxhat, xhat), axis, true);
  return tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xhat, m2)), rstd);
}

/** Row sums over every axis but the last → [C]. */
function sumToLast(t: Tensor): Tensor {
  const C = t.shape[t.rank - 1]!;
  return columnSums(tf.reshape(t, [-1, C]));
}

const layerNormAffine = (eps: number) => tf.customGrad((x, w, b, save) => {
  const { xhat, rstd } = layerNormCore(x as Tensor, eps);
  (save as tf.GradSaveFunc)([xhat, rstd, w as Tensor]);
  return {
    value: tf.add(tf.mul(xhat, w as Tensor), b as Tensor),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sxhat, srstd, sw] = saved as [Tensor, Tensor, Tensor];
      return [inputGrad(tf.mul(dy, sw), sxhat, srstd), sumToLast(tf.mul(dy, sxhat)), sumToLast(dy)];
    }),
  };
}) as unknown as (x: Tensor, w: Tensor, b: Tensor) => Tensor;

/** The same without a bias (nanoGPT's bias=False): y = x̂·w, gradients dx as above and dw. */
const layerNormScale = (eps: number) => tf.customGrad((x, w, save) => {
  const { xhat, rstd } = layerNormCore(x as Tensor, eps);
  (save as tf.GradSaveFunc)([xhat, rstd, w as Tensor]);
  return {
    value: tf.mul(xhat, w as Tensor),
    gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
      const [sxhat, srstd, sw] = saved as [Tensor, Tensor, Tensor];
      return [inputGrad(tf.mul(dy, sw), sxhat, srstd), sumToLast(tf.mul(dy, sxhat))];
    }),
  };
}) as unknown as (x: Tensor, w: Tensor) => Tensor;

const affineByEps = new Map<number, (x: Tensor, w: Tensor, b: Tensor) => Tensor>();
const scaleByEps = new Map<number, (x: Tensor, w: Tensor) => Tensor>();

/** LayerNorm over the last axis (biased variance, as torch). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  if (weight && x.dtype === 'float32' && fusedKernel(FUSED.layerNorm)) {
    const withBias = bias !== null;
    return fused(`ln ${eps} ${withBias}`, () => fusedLayerNorm(eps, withBias))(...(withBias ? [x, weight, bias] : [x, weight]));
  }
  if (weight && bias) {
    let f = affineByEps.get(eps);
    if (!f) affineByEps.set(eps, (f = layerNormAffine(eps)));
    return f(x, weight, bias);
  }
  if (weight) {
    let f = scaleByEps.get(eps);
    if (!f) scaleByEps.set(eps, (f = layerNormScale(eps)));
    return f(x, weight);
  }
  // Rare form (no weight): plain ops, differentiated by tfjs.
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), axis, true);
  let y = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
  if (weight) y = tf.mul(y, weight);
  if (bias) y = tf.add(y, bias);
  return y;
}

/**
 * RMSNorm over the last axis (LLaMA): y = x·rstd·w, rstd = rsqrt(mean(x²) + eps), with the gradient written out:
 * dx = rstd·(dx̂ − x̂·mean(dx̂·x̂)), dx̂ = dy·w, x̂ = x·rstd;  dw = Σ dy·x̂. Saved: x̂ and rstd.
 */
const rmsNormByEps = new Map<number, (x: Tensor, w: Tensor) => Tensor>();

export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  if (x.dtype === 'float32' && fusedKernel(FUSED.rmsNorm)) return fused(`rms ${eps}`, () => fusedRmsNorm(eps))(x, weight);
  let f = rmsNormByEps.get(eps);
  if (!f) {
    f = tf.customGrad((xx, ww, save) => {
      const t = xx as Tensor;
      const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(t), t.rank - 1, true), eps));
      const xhat = tf.mul(t, rstd);
      (save as tf.GradSaveFunc)([xhat, rstd, ww as Tensor]);
      return {
        value: tf.mul(xhat, ww as Tensor),
        gradFunc: tidyGrad((dy: Tensor, saved: Tensor[]) => {
          const [sxhat, srstd, sw] = saved as [Tensor, Tensor, Tensor];
          const dxhat = tf.mul(dy, sw);
          const m = tf.mean(tf.mul(dxhat, sxhat), sxhat.rank - 1, true);
          return [tf.mul(tf.sub(dxhat, tf.mul(sxhat, m)), srstd), sumToLast(tf.mul(dy, sxhat))];
        }),
      };
    }) as unknown as (x: Tensor, w: Tensor) => Tensor;
    rmsNormByEps.set(eps, f);
  }
  return f(x, weight);
}
