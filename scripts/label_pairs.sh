#!/usr/bin/env bash
# Stage 2a: preference pairs labelled the way InstructGPT describes, with an automatic labeler standing in for the
# human: the SFT model samples $LABEL_SAMPLES answers per prompt, the AFINN sentiment judge ranks them, and every two
# answers of a prompt whose scores differ by at least $LABEL_MIN_GAP become a chosen/rejected pair (smaller gaps are
# near-ties and are skipped, as human labelers mark ties; the stats files count them). Two disjoint prompt blocks of
# the alpaca file: one for the reward model's training pairs, the next for its held-out pairs. Extra arguments go to
# both label_pairs calls.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
PROMPTS=${LABEL_PROMPTS_FILE:-$ROOT/datasets/full/alpaca_en_demo.json}
TRAIN_N=${LABEL_PROMPTS:-743}
EVAL_N=${LABEL_EVAL_PROMPTS:-128}
label() {
  cli label_pairs --pretrain "${SFT_OUT:-$OUT/sft}" --prompts "$PROMPTS" \
    --num_samples "${LABEL_SAMPLES:-16}" --pairs "${LABEL_PAIRS:-all}" --min_gap "${LABEL_MIN_GAP:-2}" \
    --max_input_len "${LABEL_INPUT_LEN:-96}" --max_new_tokens "${LABEL_NEW_TOKENS:-20}" --batch_size "${LABEL_BATCH:-48}" \
    --backend "${BACKEND:-auto}" "$@"
}
# Training pairs from prompts 0…TRAIN_N−1, held-out pairs from the next EVAL_N (another seed for the sampling).
label --skip_prompts 0 --num_prompts "$TRAIN_N" --seed "${SEED:-42}" --out "$OUT/pairs/train.jsonl" --stats "$OUT/pairs/train.stats.json" "${@}"
label --skip_prompts "$TRAIN_N" --num_prompts "$EVAL_N" --seed "$(( ${SEED:-42} + 1 ))" --out "$OUT/pairs/eval.jsonl" --stats "$OUT/pairs/eval.stats.json" "${@}"
