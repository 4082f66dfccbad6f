/**
 * The layout of transformers' `<Family>ForSequenceClassification` with `num_labels` 1: what reward models on the hub
 * (and TRL's RewardTrainer outputs) look like, and how this project writes reward models and critics.
 * - weights: the backbone under the causal LM's names (`model.*`, `transformer.*`, `gpt_neox.*`), no `lm_head`,
 *   plus `score.weight` [1, C] (no bias);
 * - config.json: `architectures: ["<Family>ForSequenceClassification"]`, `id2label`/`label2id` for one label (as
 *   `save_pretrained` writes them), `pad_token_id` (transformers reads the score at the last token that is not it,
 *   and refuses batches without it).
 * What this project also needs goes in its own `rlhf` field (see `RLHF_CONFIG_KEY`).
 */

/** This project's namespaced config.json field: `kind`, `reward_reduction`, `score_bias`, `prompt_template`. */
export const RLHF_CONFIG_KEY = 'rlhf';

/** Architecture names by model_type, for configs that name no causal-LM architecture to derive it from. */
const BY_MODEL_TYPE: Record<string, string> = {
  gpt2: 'GPT2ForSequenceClassification',
  opt: 'OPTForSequenceClassification',
  bloom: 'BloomForSequenceClassification',
  llama: 'LlamaForSequenceClassification',
  mistral: 'MistralForSequenceClassification',
  qwen2: 'Qwen2ForSequenceClassification',
  qwen3: 'Qwen3ForSequenceClassification',
  gpt_neox: 'GPTNeoXForSequenceClassification',
  phi3: 'Phi3ForSequenceClassification',
  gemma2: 'Gemma2ForSequenceClassification',
};

const SUFFIX = 'ForSequenceClassification';

/** Whether config.json describes a sequence-classification model (a reward model in the hub's layout). */
export function isSequenceClassificationConfig(raw: Record<string, unknown>): boolean {
  const archs = raw.architectures;
  return Array.isArray(archs) && archs.some((a) => typeof a === 'string' && a.endsWith(SUFFIX));
}

/**
 * `<Family>ForSequenceClassification` for a config: from its causal-LM architecture (`LlamaForCausalLM`,
 * `GPT2LMHeadModel`, ...), else from model_type.
 */
export function sequenceClassificationArchitecture(raw: Record<string, unknown>, modelType: string): string {
  const archs = Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === 'string') : [];
  const existing = archs.find((a) => a.endsWith(SUFFIX));
  if (existing) return existing;
  const lm = archs.find((a) => /(ForCausalLM|LMHeadModel)$/.test(a));
  if (lm) return lm.replace(/(ForCausalLM|LMHeadModel)$/, SUFFIX);
  const known = BY_MODEL_TYPE[modelType];
  if (!known) throw new Error(`no ${SUFFIX} architecture is known for model_type "${modelType}"`);
  return known;
}

/** The config.json fields of a one-label sequence-classification checkpoint. */
export function sequenceClassificationFields(raw: Record<string, unknown>, modelType: string, padTokenId: number | null): Record<string, unknown> {
  if (padTokenId === null) {
    throw new Error('a reward model needs a pad_token_id (transformers reads the score at the last non-pad token): give the tokenizer a pad or eos token');
  }
  return {
    architectures: [sequenceClassificationArchitecture(raw, modelType)],
    id2label: { '0': 'LABEL_0' },
    label2id: { LABEL_0: 0 },
    num_labels: 1,
    pad_token_id: padTokenId,
  };
}
