#!/usr/bin/env bash
# Stage 2: a reward model from the SFT output, on hh-rlhf preference pairs. Extra arguments go to train_reward_model.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
cli train_reward_model \
  --pretrain "${SFT_OUT:-$OUT/sft}" \
  --dataset "${RM_DATA:-$ROOT/datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz}" \
  --prompt_template human_assistant --loss_fn log_sig \
  --max_len "${RM_MAX_LEN:-128}" --batch_size "${RM_BATCH:-8}" --max_epochs "${RM_EPOCHS:-2}" \
  ${RM_SAMPLES:+--max_datasets_size "$RM_SAMPLES"} --lr "${RM_LR:-3e-4}" --eval_ratio 0.2 \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/rm" "$@"
