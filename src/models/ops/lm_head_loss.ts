/**
 * Mean causal-LM cross-entropy straight from hidden states, for an LM head stored as [V, C] (a tied embedding or
 * lm_head.weight), without ever holding the [N, V] logits: at GPT-2's 50k vocabulary an SFT batch of 8×512 tokens
 * has 0.8 GiB of logits, and the softmax, its gradient and the head's gradient pieces need several such tensors,
 * more than the 4 GiB wasm heap. Rows go through in chunks of a few hundred.
 *
 * The loss is a scalar, so its gradient with respect to each chunk's logits is already known in the forward pass:
 * (softmax − onehot(label))·valid/count. The forward pass therefore also accumulates dh = G·W and dW = Gᵀ·h chunk
 * by chunk, saves those two, and the backward pass only scales them by the incoming dy. When no gradient is being
 * recorded only the loss is computed.
 *
 * Equivalent to `crossEntropy(h · Wᵀ, labels)` (labels already shifted; IGNORE_INDEX rows ignored).
 */
import { tf, type Tensor } from '../../engine/tf.js';
import { IGNORE_INDEX, scatterAt } from './loss.js';
import { VOCAB_CHUNK } from './vocab_projection.js';
import { gradientsRecording } from './tidy_grad.js';
import { isPackedWeight, type PackedWeight } from './packed_weight.js';
import { packedMatMul } from './packed_linear.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';

/** An LM head [V, C]: a float32 tensor, or frozen and packed (then only dh flows back, never dW). */
export type HeadWeight = Tensor | PackedWeight;

/** Rows r0 … r0 + R of a [N] or [N, C] tensor (t itself when that is all of it: one chunk, no copy). */
function rowsOf(t: Tensor, r0: number, R: number): Tensor {
  if (r0 === 0 && R === t.shape[0]) return t;
  return t.rank === 1 ? tf.slice(t, [r0], [R]) : tf.slice(t, [r0, 0], [R, -1]);
}

/**
 * The scalar loss `forward` returns with its gradients (one per input, computed in the same pass): the backward pass
 * only scales them by the incoming dy, and frees them.
 */
function lossWithPrecomputedGrads(inputs: Tensor[], forward: (...xs: Tensor[]) => { value: Tensor; grads: Tensor[] }, hostMemory = false): Tensor {
  const op = tf.customGrad((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const { value, grads } = forward(...(args as Tensor[]));
    save(grads);
    return {
      value,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        // The loss is usually the whole objective (dy = 1): then the gradients are the saved ones as they are (clones
        // share their values), not a pass over the [V, C] head gradient. Only read where reading dy costs nothing.
        const unit = hostMemory && dy.size === 1 && dy.dataSync()[0] === 1;
        const scaled = tf.tidy(() => saved.map((g) => (unit ? tf.clone(g) : tf.mul(g, dy))));
        for (const t of saved) t.dispose();
        return scaled;
      },
    };
  }) as unknown as (...xs: Tensor[]) => Tensor;
  return op(...inputs);
}

/** Raw logits of a chunk of rows hc [R, C] against the head's transposed vocabulary pieces [C, vc]. */
export function piecesLogits(hc: Tensor, WTj: Tensor[]): Tensor {
  return WTj.length === 1 ? tf.matMul(hc, WTj[0]!) : tf.concat(WTj.map((wt) => tf.matMul(hc, wt)), 1); // (R, V)
}

/** Rows per chunk: 256 rows × 50k vocabulary ≈ 50 MiB per [rows, V] temporary. */
export const LOSS_ROWS_PER_CHUNK = 256;

/** Logits per chunk on the fused path, at least: 8M (32 MiB per [rows, V] temporary; tiny-chat's 1024 rows in one). */
export const FUSED_CHUNK_LOGITS = 1 << 23;

export function splitSizes(total: number, chunk: number): number[] {
  const sizes: number[] = [];
  for (let i = 0; i < total; i += chunk) sizes.push(Math.min(chunk, total - i));
  return sizes;
}

/** The head cut into vocabulary pieces W_j [vc, C] and their transposes [C, vc], made once per call. */
export function headPieces(W: Tensor, vocabSizes: number[]): { Wj: Tensor[]; WTj: Tensor[] } {
  const C = W.shape[1]!;
  const Wj = vocabSizes.length === 1 ? [W] : tf.split(W, vocabSizes, 0);
  return { Wj, WTj: Wj.map((w) => tf.transpose(w, [1, 0])) };
}

/**
 * The head's gradient pieces for one chunk of rows, given G = ∂loss/∂logits [R, V] of the chunk and the rows hc
 * [R, C]: dh = G·W [R, C], and each vocabulary piece's hᵀ·G_j [C, vc] added to `dWT` (null on the first chunk).
 * Call inside a tidy.
 */
export function headGradChunk(G: Tensor, hc: Tensor, Wj: Tensor[], vocabSizes: number[], dWT: readonly (Tensor | null)[] | null): { dh: Tensor; dWT: Tensor[] } {
  const Gj = vocabSizes.length === 1 ? [G] : tf.split(G, vocabSizes, 1);
  const hcT = tf.transpose(hc, [1, 0]); // (C, R)
  let dh: Tensor | null = null;
  const next = Gj.map((g, j) => {
    const part = tf.matMul(g, Wj[j]!); // (R, C)
    dh = dh ? tf.add(dh, part) : part;
    const prod = tf.matMul(hcT, g); // (C, vc)
    const prev = dWT?.[j];
    return prev ? tf.add(prev, prod) : prod;
  });
  return { dh: dh!, dWT: next };
}

/**
 * Gemma 2's final-logit soft-capping z ↦ c·tanh(z/c), differentiated by tfjs (its inputs are [rows, V] chunks or
 * generation's last-position logits). The chunked heads below apply it themselves, with d/dz = 1 − tanh².
 */
export function softcapLogits(z: Tensor, cap: number): Tensor {
  return tf.mul(tf.tanh(tf.div(z, cap)), cap);
}

/** Raw head products z → the capped logits and the factor 1 − tanh² their gradients are multiplied by. */
export function capChunk(z: Tensor, cap: number | null): { logits: Tensor; slope: Tensor | null } {
  if (!cap) return { logits: z, slope: null };
  const t = tf.tanh(tf.div(z, cap));
  return { logits: tf.mul(t, cap), slope: tf.sub(1, tf.square(t)) };
}

interface ChunkResult {
  /** Σ over the chunk's rows of weight·(lse − picked). */
  loss: Tensor;
  /** The gradient with respect to the chunk's logits, [R, V], when asked for. */
  G?: Tensor;
}

/** One chunk of rows: logits, per-row loss, and (optionally) the logits gradient (p − onehot)·weight. */
function chunkLoss(hc: Tensor, logitsOf: (hc: Tensor) => Tensor, targets: Tensor, weight: Tensor, withGrad: boolean, cap: number | null): ChunkResult {
  const R = hc.shape[0]!;
  const raw = logitsOf(hc); // (R, V)
  const { logits, slope } = capChunk(raw, cap);
  const V = logits.shape[1]!;
  const p = tf.softmax(logits, -1);
  const lse = tf.sub(tf.max(logits, -1), tf.log(tf.max(p, -1)));
  const flatIdx = tf.add(tf.mul(tf.range(0, R, 1, 'int32'), tf.scalar(V, 'int32')), targets);
  const picked = tf.gather(tf.reshape(logits, [R * V]), flatIdx);
  const loss = tf.sum(tf.mul(tf.sub(lse, picked), weight));
  if (!withGrad) return { loss };
  const scaled = tf.reshape(tf.mul(p, tf.reshape(weight, [R, 1])), [R * V]); // weight·p
  const atTarget = tf.sub(tf.gather(scaled, flatIdx), weight); // weight·(p_target − 1)
  const G = tf.reshape(scatterAt(scaled, flatIdx, atTarget, R, V), [R, V]);
  return { loss, G: slope ? tf.mul(G, slope) : G };
}

/**
 * Mean cross-entropy of (h[N, C] · head[V, C]ᵀ) against int labels [N], ignoring IGNORE_INDEX; `softcap`: the logits
 * soft-capped first (see softcapLogits).
 */
export function lmHeadCrossEntropy(h: Tensor, head: HeadWeight, labels: Tensor, rowsPerChunk = LOSS_ROWS_PER_CHUNK, softcap: number | null = null): Tensor {
  const [N, C] = h.shape as [number, number];
  const V = head.shape[0]!;
  if (head.shape[1] !== C) throw new Error(`lmHeadCrossEntropy: head [${head.shape}] does not match hidden width ${C}`);
  if (labels.size !== N) throw new Error(`lmHeadCrossEntropy: ${labels.size} labels for ${N} rows`);
  const rowSizes = splitSizes(N, rowsPerChunk);
  const vocabSizes = splitSizes(V, VOCAB_CHUNK);
  // Per-row weights valid/count and safe targets, shared by both paths.
  const { targets, weights } = tf.tidy(() => {
    const lb = tf.reshape(tf.cast(labels, 'int32'), [N]);
    const valid = tf.notEqual(lb, IGNORE_INDEX);
    const mask = tf.cast(valid, 'float32');
    return { targets: tf.where(valid, lb, tf.zerosLike(lb)), weights: tf.div(mask, tf.maximum(tf.sum(mask), 1)) };
  });

  try {
    if (isPackedWeight(head)) return packedHeadCrossEntropy(h, head, rowSizes, targets, weights, softcap);
    if (!softcap && h.dtype === 'float32' && fusedKernel(FUSED.crossEntropyRows)) {
      // With the default chunk, larger chunks where the vocabulary is small (fewer, larger products; no dW to add up).
      const rows = rowsPerChunk === LOSS_ROWS_PER_CHUNK ? Math.max(rowsPerChunk, Math.floor(FUSED_CHUNK_LOGITS / V)) : rowsPerChunk;
      return fusedHeadCrossEntropy(h, head, splitSizes(N, rows), targets, weights);
    }
    if (!gradientsRecording()) {
      return tf.tidy(() => {
        const { WTj } = headPieces(head, vocabSizes);
        let total: Tensor = tf.scalar(0);
        let r0 = 0;
        for (const R of rowSizes) {
          const part = tf.tidy(() => chunkLoss(rowsOf(h, r0, R), (hc) => piecesLogits(hc, WTj), rowsOf(targets, r0, R), rowsOf(weights, r0, R), false, softcap).loss);
          const next: Tensor = tf.add(total, part);
          tf.dispose([total, part]);
          total = next;
          r0 += R;
        }
        return total;
      });
    }
    return lossWithPrecomputedGrads([h, head], (x, w) => {
      const { Wj, WTj } = headPieces(w, vocabSizes);
      let total: Tensor = tf.scalar(0);
      const dhParts: Tensor[] = [];
      let dWT: (Tensor | null)[] = vocabSizes.map(() => null); // Σ hᵀ·G_j, [C, vc] per vocabulary piece
      let r0 = 0;
      for (const R of rowSizes) {
        const step = tf.tidy(() => {
          const hc = rowsOf(x, r0, R);
          const { loss, G } = chunkLoss(hc, (c) => piecesLogits(c, WTj), rowsOf(targets, r0, R), rowsOf(weights, r0, R), true, softcap);
          const grads = headGradChunk(G!, hc, Wj, vocabSizes, dWT);
          return { loss: tf.add(total, loss), dh: grads.dh, dWTnew: grads.dWT };
        });
        tf.dispose([total, ...dWT.filter((t): t is Tensor => t !== null)]);
        total = step.loss;
        dWT = step.dWTnew;
        dhParts.push(step.dh);
        r0 += R;
      }
      const dh = dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts, 0);
      const dW = tf.concat(dWT.map((t) => tf.transpose(t!, [1, 0])), 0); // (V, C)
      return { value: total, grads: [dh, dW] };
    });
  } finally {
    tf.dispose([targets, weights]);
  }
}

/**
 * lmHeadCrossEntropy on a backend with the fused cross-entropy kernel (and products that take transposed operands
 * as they lie): per chunk, logits = hc·Wᵀ, then one kernel gives the chunk's loss and G = (softmax − onehot)·weight,
 * then dh = G·W and dW += Gᵀ·hc, with no transposed or vocabulary-split copy of W.
 */
function fusedHeadCrossEntropy(h: Tensor, head: Tensor, rowSizes: number[], targets: Tensor, weights: Tensor): Tensor {
  const withGrad = gradientsRecording();
  const run = (x: Tensor, W: Tensor): { total: Tensor; dh: Tensor | null; dW: Tensor | null } => {
    let total: Tensor = tf.scalar(0);
    let dW: Tensor | null = null;
    const dhParts: Tensor[] = [];
    let r0 = 0;
    for (const R of rowSizes) {
      const step = tf.tidy(() => {
        const hc = rowsOf(x, r0, R);
        const logits = tf.matMul(hc, W, false, true); // (R, V)
        // The logits are not read again: their gradient takes their place.
        const [loss, G] = tf.engine().runKernel(FUSED.crossEntropyRows, { logits, targets: rowsOf(targets, r0, R), weights: rowsOf(weights, r0, R) }, { withGrad, inPlace: true }) as Tensor[];
        if (!G) return { loss: tf.add(total, loss!) };
        const prod = tf.matMul(G, hc, true, false); // (V, C)
        return { loss: tf.add(total, loss!), dh: tf.matMul(G, W), dW: dW ? tf.add(dW, prod) : prod };
      }) as { loss: Tensor; dh?: Tensor; dW?: Tensor };
      tf.dispose([total, ...(dW ? [dW] : [])]);
      total = step.loss;
      if (step.dh) dhParts.push(step.dh);
      dW = step.dW ?? null;
      r0 += R;
    }
    return { total, dh: withGrad ? (dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts, 0)) : null, dW };
  };
  if (!withGrad) return tf.tidy(() => run(h, head).total);
  // The fused kernel exists on the native backend only, whose tensors are host memory.
  return lossWithPrecomputedGrads([h, head], (x, W) => {
    const { total, dh, dW } = run(x, W);
    return { value: total, grads: [dh!, dW!] };
  }, true);
}

/**
 * lmHeadCrossEntropy for a packed frozen head: the same chunks, logits from the packed product, and only dh = G·W
 * accumulated (the head takes no gradient).
 */
function packedHeadCrossEntropy(h: Tensor, head: PackedWeight, rowSizes: number[], targets: Tensor, weights: Tensor, softcap: number | null): Tensor {
  const logitsOf = (hc: Tensor) => packedMatMul(hc, head, true);
  const withGrad = gradientsRecording();
  const run = (x: Tensor): { total: Tensor; dh: Tensor | null } => {
    let total: Tensor = tf.scalar(0);
    const dhParts: Tensor[] = [];
    let r0 = 0;
    for (const R of rowSizes) {
      const step = tf.tidy(() => {
        const { loss, G } = chunkLoss(rowsOf(x, r0, R), logitsOf, rowsOf(targets, r0, R), rowsOf(weights, r0, R), withGrad, softcap);
        return G ? { loss: tf.add(total, loss), dh: packedMatMul(G, head, false) } : { loss: tf.add(total, loss) };
      }) as { loss: Tensor; dh?: Tensor };
      total.dispose();
      total = step.loss;
      if (step.dh) dhParts.push(step.dh);
      r0 += R;
    }
    return { total, dh: withGrad ? (dhParts.length === 1 ? dhParts[0]! : tf.concat(dhParts, 0)) : null };
  };
  if (!withGrad) return run(h).total;
  return lossWithPrecomputedGrads([h], (x) => {
    const { total, dh } = run(x);
    return { value: total, grads: [dh!] };
  });
}
