#!/usr/bin/env bash
# Online RL with group-relative advantages (train_grpo) on GSM8K questions with verifiable rewards. The defaults run
# the demo task on the shipped model: answer with a number (the `format` reward with the regex \d), which the
# 2.85M-parameter model learns in a few steps; pass REWARDS=accuracy,format (and a real model) for GSM8K itself.
# Extra arguments go to train_grpo.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
REWARDS=${REWARDS:-format}
# The demo's regex applies only to the demo's reward; with other rewards `format` keeps its R1 default.
if [ "$REWARDS" = format ]; then FORMAT_PATTERN=${FORMAT_PATTERN-'\d'}; fi
cli train_grpo --pretrain "${SFT_OUT:-$ROOT/models/tiny-chat}" \
  --dataset "${PROMPTS:-$ROOT/datasets/verifiable/gsm8k-train-first200.jsonl}" \
  --prompt_template "${TEMPLATE:-alpaca}" \
  --reward_funcs "$REWARDS" ${FORMAT_PATTERN:+--format_pattern "$FORMAT_PATTERN"} \
  --batch_size "${GRPO_BATCH:-4}" --num_generations "${GRPO_G:-8}" --max_steps "${GRPO_STEPS:-12}" \
  --max_prompt_length "${GRPO_PROMPT_LEN:-64}" --max_new_tokens "${GRPO_NEW_TOKENS:-12}" \
  --advantage "${GRPO_ADVANTAGE:-grpo}" --loss_type "${GRPO_LOSS:-dapo}" --beta "${GRPO_BETA:-0}" \
  --lr "${GRPO_LR:-3e-4}" \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/grpo" "$@"
