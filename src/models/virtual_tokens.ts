/**
 * What prefix tuning and prompt tuning share: P virtual positions in front of every sequence, as PEFT's
 * `PeftModelForCausalLM` feeds them. The caller's ids, attention mask and position ids cover its own tokens only;
 * `withVirtualTokens` turns them into the decoder's view:
 * - the attention mask gets P ones in front (every real and padded query sees the virtual positions);
 * - position ids the caller gives are shifted by P (virtual positions take 0..P−1: PEFT offsets prefix tuning's
 *   position ids by P, and prompt tuning's virtual inputs take the first P cache positions); without position ids
 *   the decoder's defaults count from 0 over virtual + real positions, as HF's forward does;
 * - prefix tuning: the virtual keys/values are the start of the KV cache (a cache the caller passes back already
 *   begins with them); prompt tuning: the virtual input embeddings go before the tokens' own on a call without a
 *   cache (later decoding steps find them in the cache).
 */
import { tf, type Tensor } from '../engine/tf.js';
import type { DecoderModel, ForwardOptions, KVCache } from './decoder.js';
import { IGNORE_INDEX } from './ops/loss.js';

export interface VirtualTokenAdapter {
  readonly kind: 'prefix' | 'prompt';
  readonly peftType: 'PREFIX_TUNING' | 'PROMPT_TUNING';
  /** P, the virtual positions before every sequence. */
  readonly numVirtualTokens: number;
  /** Prefix tuning: per-layer keys/values [B, Hkv, P, hs], the first P cache positions. */
  prefixCache(batch: number): KVCache | null;
  /** Prompt tuning: input embeddings [B, P, E] placed before the tokens'. */
  inputEmbeddings(batch: number): Tensor | null;
  trainableVariables(): tf.Variable[];
  /** adapter_config.json as PEFT writes it for this adapter. */
  peftConfig(baseModel: string): Record<string, unknown>;
  /** adapter_model.safetensors: `prompt_embeddings`. */
  peftTensors(): Map<string, { shape: number[]; data: Float32Array }>;
  dispose(): void;
}

/** The decoder's forward options for the caller's `opts` with the adapter's P virtual positions in front. */
export function withVirtualTokens(adapter: VirtualTokenAdapter, batch: number, opts: ForwardOptions): ForwardOptions {
  const P = adapter.numVirtualTokens;
  const out: ForwardOptions = { ...opts };
  const inject = !opts.cache; // a cache from an earlier step already holds the virtual positions
  if (opts.attentionMask) out.attentionMask = tf.concat([tf.ones([batch, P], opts.attentionMask.dtype), opts.attentionMask], 1);
  if (adapter.kind === 'prefix') {
    if (inject) out.cache = adapter.prefixCache(batch)!;
    if (opts.positionIds) out.positionIds = tf.add(opts.positionIds, tf.scalar(P, opts.positionIds.dtype));
  } else {
    if (inject) out.prependEmbeddings = adapter.inputEmbeddings(batch)!;
    if (opts.positionIds) {
      const shifted = tf.add(opts.positionIds, tf.scalar(P, opts.positionIds.dtype));
      out.positionIds = inject
        ? tf.concat([tf.tile(tf.reshape(tf.range(0, P, 1, opts.positionIds.dtype as 'int32'), [1, P]), [batch, 1]), shifted], 1)
        : shifted;
    }
  }
  return out;
}

/**
 * Causal-LM loss of a padded batch (labels [B, T], IGNORE_INDEX ignored) with the model's adapter on, as PEFT's
 * forward computes it: for prompt tuning the virtual positions are labelled IGNORE_INDEX in front, so the last one
 * predicts labels[0]; for prefix tuning (or no adapter) the labels are the caller's. Never builds [B, T, V] logits.
 */
export function causalLmLossWithAdapter(model: DecoderModel, inputIds: Tensor, labels: Tensor, opts: ForwardOptions = {}): Tensor {
  return tf.tidy(() => {
    const vt = model.virtualTokens;
    const P = vt?.kind === 'prompt' ? vt.numVirtualTokens : 0;
    const { hidden } = model.forward(inputIds, { ...opts, keepVirtual: P > 0 });
    const all = P ? tf.concat([tf.fill([labels.shape[0]!, P], IGNORE_INDEX, 'int32'), tf.cast(labels, 'int32')], 1) : labels;
    return model.lmLoss(hidden, all);
  });
}

/** Standard-normal values, as `torch.nn.Embedding` initialises PEFT's prompt tables. */
export function normalTable(rows: number, cols: number, rng: { normal(): number }): Float32Array {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  return data;
}
