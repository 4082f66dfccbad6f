#!/usr/bin/env bash
# SFT → DPO: the SFT stage (scripts/train_sft.sh) unless $SFT_OUT already holds a model, then train_dpo on preference
# pairs with the same prompt template, the SFT model as the frozen reference. Extra arguments go to train_dpo
# (e.g. --loss_type ipo, --lora_rank 8, --precompute_ref_log_probs).
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
SFT_OUT=${SFT_OUT:-$OUT/sft}
if [ ! -f "$SFT_OUT/config.json" ] && [ ! -f "$SFT_OUT/adapter_config.json" ]; then
  bash "$ROOT/scripts/train_sft.sh"
fi
cli train_dpo \
  --pretrain "$SFT_OUT" \
  --dataset "${DPO_DATA:-$ROOT/datasets/preference/dpo_en_demo.json}" \
  --prompt_template "${TEMPLATE:-alpaca}" --loss_type "${DPO_LOSS:-sigmoid}" --beta "${DPO_BETA:-0.1}" \
  --max_len "${DPO_MAX_LEN:-192}" --batch_size "${DPO_BATCH:-4}" --max_epochs "${DPO_EPOCHS:-2}" \
  ${DPO_SAMPLES:+--max_datasets_size "$DPO_SAMPLES"} --lr "${DPO_LR:-1e-4}" --warmup_ratio 0.1 --eval_ratio 0.2 \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/dpo" "$@"
