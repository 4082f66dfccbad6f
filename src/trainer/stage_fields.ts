/**
 * Config fields every training stage has under the same flag names (src/cli/common.ts declares the flags), so each
 * stage's config lists only its own. Field names are the camelCase of the flags.
 */
import type { FrozenDtype } from '../models/ops/frozen_dtypes.js';

/** LoRA (PEFT's meanings): --lora_rank, --lora_alpha, --lora_dropout, --merge_lora_weights. */
export interface LoraFields {
  /** LoRA rank; 0 trains every weight. */
  loraRank: number;
  loraAlpha: number;
  loraDropout: number;
  /** With LoRA: save full weights with the adapter merged (true) or a PEFT adapter naming its base (false). */
  mergeLoraWeights: boolean;
  /** --frozen_dtype: frozen weights (a reference, a reward model, the base under an adapter) packed in bf16/int8/nf4. */
  frozenDtype?: FrozenDtype;
}

/** AdamW: --lr (the peak of the schedule), --weight_decay, --grad_clip. */
export interface OptimizerFields {
  lr: number;
  weightDecay: number;
  /** Max global gradient norm (0: no clipping). */
  gradClip: number;
}

/** --save_path, --save_steps, --need_optim_ckpt, --resume, --log_dir, --seed, --backend, --strategy. */
export interface RunFields {
  savePath: string;
  /** Also write <savePath>/checkpoint-<step> every n steps (0: only at the end). */
  saveSteps: number;
  /** Write optimizer state with checkpoints (needed for an exact --resume). */
  needOptimCkpt: boolean;
  /** Continue from a checkpoint directory this command wrote. */
  resume?: string;
  /** metrics.jsonl + TensorBoard events (default <savePath>/logs). */
  logDir?: string;
  seed: number;
  backend: string;
  strategy: string;
}
