import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/tf.js';
import { AdamW, noDecayForBiasAndNorm } from '../src/trainer/adamw.js';

function value(v: tf.Tensor): number[] {
  return Array.from(v.dataSync());
}

/**
 * torch.optim.AdamW's single-tensor step (torch/optim/adamw.py, amsgrad=False), written out in float64:
 *   param.mul_(1 - lr * weight_decay)
 *   exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   bias_correction1 = 1 - beta1 ** step; bias_correction2 = 1 - beta2 ** step
 *   step_size = lr / bias_correction1
 *   denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
 *   param.addcdiv_(exp_avg, denom, value=-step_size)
 */
function torchAdamWStep(
  s: { p: number[]; m: number[]; v: number[]; step: number },
  grad: number[],
  h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number },
): void {
  s.step += 1;
  const bc1 = 1 - h.beta1 ** s.step;
  const bc2 = 1 - h.beta2 ** s.step;
  for (let i = 0; i < s.p.length; i++) {
    s.p[i]! *= 1 - h.lr * h.weightDecay;
    s.m[i] = s.m[i]! + (grad[i]! - s.m[i]!) * (1 - h.beta1);
    s.v[i] = s.v[i]! * h.beta2 + grad[i]! * grad[i]! * (1 - h.beta2);
    const denom = Math.sqrt(s.v[i]!) / Math.sqrt(bc2) + h.eps;
    s.p[i]! -= (h.lr / bc1) * (s.m[i]! / denom);
  }
}

describe('AdamW', () => {
  it('matches a hand-computed two-step example (decay applied before the Adam update)', () => {
    const w = tf.variable(tf.tensor1d([1.0]));
    const opt = new AdamW([['w', w]], { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 });
    // Step 1, g = 0.5: p = 1*(1 - 0.01) = 0.99; m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25;
    // p = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.890000002.
    opt.step({ w: tf.tensor1d([0.5]) });
    expect(value(w)[0]).toBeCloseTo(0.890000002, 6);
    // Step 2, g = -1: p = 0.890000002 * 0.99 = 0.88110000198; m = 0.045 - 0.1 = -0.055; v = 0.00024975 + 0.001
    // = 0.00124975; m^ = -0.055 / 0.19 = -0.2894737; v^ = 0.00124975 / 0.001999 = 0.6251876, sqrt = 0.7906880;
    // p = 0.88110000198 + 0.1 * 0.2894737 / 0.7906880 = 0.9177104.
    opt.step({ w: tf.tensor1d([-1.0]) });
    expect(value(w)[0]).toBeCloseTo(0.9177104, 6);
    expect(opt.stepCount).toBe(2);
    opt.dispose();
    w.dispose();
  });

  it('matches torch.optim.AdamW written out, over 6 steps, with per-group no-decay and a changing lr', () => {
    // Large lr, weight decay and eps, and small gradients, so that misplacing the decay or eps changes digits we check.
    const h = { lr: 0.02, beta1: 0.8, beta2: 0.95, eps: 1e-3, weightDecay: 0.3 };
    const init = [0.3, -1.2, 2.5, 0.0, -0.7, 1.1];
    const a = tf.variable(tf.tensor2d(init, [2, 3]));
    const bias = tf.variable(tf.tensor1d([0.5, -0.5]));
    const opt = new AdamW(
      new Map<string, tf.Variable>([
        ['h.0.attn.weight', a],
        ['h.0.attn.bias', bias],
      ]),
      { lr: h.lr, betas: [h.beta1, h.beta2], eps: h.eps, weightDecay: h.weightDecay, noDecay: noDecayForBiasAndNorm },
    );
    const refA = { p: [...init], m: Array(6).fill(0), v: Array(6).fill(0), step: 0 };
    const refB = { p: [0.5, -0.5], m: [0, 0], v: [0, 0], step: 0 };
    for (let t = 0; t < 6; t++) {
      const lr = h.lr * (1 + t); // as a scheduler would pass it
      const gA = init.map((x, i) => Math.sin(3 * t + i) * (1 + x) * (i % 2 ? 0.01 : 1));
      const gB = [Math.cos(t), -0.1 * t];
      opt.step({ 'h.0.attn.weight': tf.tensor2d(gA, [2, 3]), 'h.0.attn.bias': tf.tensor1d(gB) }, lr);
      torchAdamWStep(refA, gA, { ...h, lr });
      torchAdamWStep(refB, gB, { ...h, lr, weightDecay: 0 });
    }
    const gotA = value(a);
    const gotB = value(bias);
    refA.p.forEach((x, i) => expect(gotA[i]).toBeCloseTo(x, 5));
    refB.p.forEach((x, i) => expect(gotB[i]).toBeCloseTo(x, 5));
    // The moments are torch's exp_avg / exp_avg_sq.
    const state = opt.stateDict();
    const m = state.tensors.get('exp_avg.h.0.attn.weight')!;
    expect(m.shape).toEqual([2, 3]);
    refA.m.forEach((x, i) => expect(m.data[i]).toBeCloseTo(x, 5));
    refA.v.forEach((x, i) => expect(state.tensors.get('exp_avg_sq.h.0.attn.weight')!.data[i]).toBeCloseTo(x, 6));
    opt.dispose();
    tf.dispose([a, bias]);
  });

  it('skips parameters without a gradient and keeps their bias-correction step apart', () => {
    const x = tf.variable(tf.tensor1d([1]));
    const y = tf.variable(tf.tensor1d([1]));
    const opt = new AdamW([['x', x], ['y', y]], { lr: 0.1, weightDecay: 0 });
    opt.step({ x: tf.tensor1d([1]) });
    expect(value(y)[0]).toBe(1); // untouched
    opt.step({ x: tf.tensor1d([1]), y: tf.tensor1d([1]) });
    // y's first update: m^ = g, v^ = g^2, so it moves by lr * 1/(1 + 1e-8) exactly as x did on its first step.
    expect(value(y)[0]).toBeCloseTo(0.9, 6);
    expect(opt.stateDict().paramSteps).toEqual({ x: 2, y: 1 });
    opt.dispose();
    tf.dispose([x, y]);
  });

  it('does not leak tensors over 20 steps', () => {
    const w = tf.variable(tf.randomNormal([8, 4], 0, 1, 'float32', 1));
    const opt = new AdamW([['w', w]], { lr: 0.01 });
    const grad = tf.ones([8, 4]);
    opt.step({ w: grad }); // creates the moments
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) opt.step(new Map([['w', grad]]));
    expect(tf.memory().numTensors).toBe(before);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before - 2);
    tf.dispose([w, grad]);
  });

  it('round-trips its state: a restored optimizer continues exactly like the original', () => {
    const make = () => tf.variable(tf.tensor1d([0.2, -0.4, 0.6]));
    const grads = [[0.1, 0.2, -0.3], [0.5, -0.1, 0.0], [-0.2, 0.3, 0.4]];
    const w1 = make();
    const opt1 = new AdamW([['w', w1]], { lr: 0.05 });
    opt1.step({ w: tf.tensor1d(grads[0]!) });
    opt1.step({ w: tf.tensor1d(grads[1]!) });
    const saved = opt1.stateDict();
    expect([...saved.tensors.keys()].sort()).toEqual(['exp_avg.w', 'exp_avg_sq.w']);
    expect(saved.step).toBe(2);

    const w2 = tf.variable(tf.tensor1d(value(w1)));
    const opt2 = new AdamW([['w', w2]], { lr: 0.05 });
    opt2.loadStateDict({ step: saved.step, tensors: saved.tensors }); // without paramSteps: step applies to all
    expect(opt2.stepCount).toBe(2);
    opt1.step({ w: tf.tensor1d(grads[2]!) });
    opt2.step({ w: tf.tensor1d(grads[2]!) });
    expect(value(w2)).toEqual(value(w1));
    tf.dispose([w1, w2]);
    opt1.dispose();
    opt2.dispose();
  });

  it('rejects bad gradients and bad saved state, naming the parameter', () => {
    const w = tf.variable(tf.zeros([2, 2]));
    const opt = new AdamW([['w', w]]);
    expect(() => opt.step({ nope: tf.zeros([2, 2]) })).toThrow(/unknown parameter 'nope'/);
    expect(() => opt.step({ w: tf.zeros([4]) })).toThrow(/gradient 'w' has shape \[4\]/);
    const host = { data: new Float32Array(4), shape: [2, 2] };
    expect(() => opt.loadStateDict({ step: 1, tensors: new Map([['exp_avg.v', host]]) })).toThrow(/unknown parameter 'v'/);
    expect(() => opt.loadStateDict({ step: 1, tensors: new Map([['exp_avg.w', host]]) })).toThrow(/exp_avg only/);
    expect(() => opt.loadStateDict({ step: 1, tensors: new Map([['momentum.w', host]]) })).toThrow(/momentum\.w/);
    expect(() => new AdamW([['w', w]], { betas: [1, 0.9] })).toThrow(/betas\[0\]/);
    opt.dispose();
    w.dispose();
  });

  it('a gradient scale (clipping\'s coefficient) equals stepping on the scaled gradients, over several steps', () => {
    const h = { lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };
    const ref = { p: [0.3, -1.2, 0.7], m: [0, 0, 0], v: [0, 0, 0], step: 0 };
    const w = tf.variable(tf.tensor1d(ref.p));
    const opt = new AdamW([['w', w]], { lr: h.lr, betas: [h.beta1, h.beta2], eps: h.eps, weightDecay: h.weightDecay });
    const grads = [[0.5, -2, 1], [3, 0.1, -0.4], [-1, 1, 2]];
    const scales = [0.25, 1, 0.6];
    grads.forEach((g, i) => {
      torchAdamWStep(ref, g.map((x) => x * scales[i]!), h);
      const gt = tf.tensor1d(g);
      opt.step({ w: gt }, h.lr, scales[i]);
      gt.dispose();
    });
    value(w).forEach((x, i) => expect(x).toBeCloseTo(ref.p[i]!, 6));
    expect(() => opt.step({ w: tf.tensor1d([1, 1, 1]) }, h.lr, Number.NaN)).toThrow(/invalid gradScale/);
    opt.dispose();
    w.dispose();
  });

  it('names biases and norm weights as decay-free for every supported family', () => {
    for (const name of ['h.0.ln_1.weight', 'transformer.ln_f.weight', 'model.decoder.layers.0.final_layer_norm.weight',
      'h.0.input_layernorm.weight', 'model.norm.weight', 'h.0.attn.c_attn.bias']) {
      expect(noDecayForBiasAndNorm(name), name).toBe(true);
    }
    for (const name of ['h.0.attn.c_attn.weight', 'model.embed_tokens.weight', 'lm_head.weight']) {
      expect(noDecayForBiasAndNorm(name), name).toBe(false);
    }
  });
});
