#!/usr/bin/env bash
# Stage 1: SFT of the default model (or $PRETRAIN) on instruction data. Extra arguments go to train_sft.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
cli train_sft \
  --pretrain "${PRETRAIN:-$ROOT/models/tiny-chat}" \
  --dataset "${SFT_DATA:-$ROOT/datasets/sft/self-instruct-seed_tasks.jsonl}" \
  --prompt_template "${TEMPLATE:-alpaca}" \
  --max_len "${SFT_MAX_LEN:-192}" --batch_size "${SFT_BATCH:-8}" --max_epochs "${SFT_EPOCHS:-2}" \
  ${SFT_SAMPLES:+--max_datasets_size "$SFT_SAMPLES"} --lr "${SFT_LR:-5e-4}" --warmup_ratio 0.1 --eval_ratio 0.15 \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/sft" "$@"
