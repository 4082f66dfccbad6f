#!/usr/bin/env bash
# Stage 2b (round 2 of iterated RLHF): the labeler ranks answers of the round-1 PPO policy. PPO finds what the reward
# model over-rates (e.g. "greatly": the piece " great" carries +3, the lexicon scores the word 0); ranked by the same
# labeler, those answers become pairs that teach the reward model its mistake, and the round-2 reward model is the
# round-1 one trained on them (scripts/train_rm.sh with RM_ROUND=2). $RELABEL_PROMPTS prompts from the start of the
# training block (prompts the reward model's round-1 pairs came from; the held-out block stays held out), $LABEL_SAMPLES
# answers each, pairs as in label_pairs.sh. Extra arguments go to label_pairs.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
cli label_pairs --pretrain "${POLICY_OUT:-$OUT/round1/ppo}" --prompts "${LABEL_PROMPTS_FILE:-$ROOT/datasets/full/alpaca_en_demo.json}" \
  --num_samples "${LABEL_SAMPLES:-16}" --pairs "${LABEL_PAIRS:-all}" --min_gap "${LABEL_MIN_GAP:-2}" \
  --max_input_len "${LABEL_INPUT_LEN:-96}" --max_new_tokens "${LABEL_NEW_TOKENS:-20}" --batch_size "${LABEL_BATCH:-48}" \
  --skip_prompts 0 --num_prompts "${RELABEL_PROMPTS:-256}" --seed "$(( ${SEED:-42} + 2 ))" \
  --backend "${BACKEND:-auto}" --out "$OUT/pairs/round2.jsonl" --stats "$OUT/pairs/round2.stats.json" "$@"
