#!/usr/bin/env bash
# Stage 3: PPO. Actor and initial model from the SFT output, reward model and critic from the RM output.
# DATA=sentiment (the default pipeline): the first $PPO_PROMPTS alpaca prompts (the judge's held-out prompts come from
# the end of the file); DATA=hh-rlhf: the awesome-chatgpt-prompts CSV. Extra arguments go to train_prompts.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
if [ "${DATA:-sentiment}" = hh-rlhf ]; then
  : "${PROMPTS:=$ROOT/datasets/prompts/awesome-chatgpt-prompts.csv}" "${PPO_EPISODES:=4}" "${PPO_COLLECT:=2}" "${PPO_UPDATES:=2}"
  : "${PPO_EXP_BATCH:=8}" "${PPO_TRAIN_BATCH:=8}" "${PPO_NEW_TOKENS:=32}" "${PPO_LR:=5e-5}" "${PPO_CRITIC_LR:=1e-4}" "${PPO_KL:=0.05}"
else
  : "${PROMPTS:=$ROOT/datasets/full/alpaca_en_demo.json}" "${PPO_PROMPTS:=512}" "${PPO_EPISODES:=20}" "${PPO_COLLECT:=1}"
  : "${PPO_UPDATES:=2}" "${PPO_EXP_BATCH:=16}" "${PPO_TRAIN_BATCH:=8}" "${PPO_NEW_TOKENS:=20}" "${PPO_LR:=3e-5}"
  : "${PPO_CRITIC_LR:=2e-4}" "${PPO_KL:=0.2}"
fi
cli train_prompts "$PROMPTS" \
  --pretrain "${SFT_OUT:-$OUT/sft}" --rm_path "${RM_OUT:-$OUT/rm}" \
  --prompt_template "${TEMPLATE:-alpaca}" \
  --num_episodes "$PPO_EPISODES" --num_collect_steps "$PPO_COLLECT" --num_update_steps "$PPO_UPDATES" \
  --experience_batch_size "$PPO_EXP_BATCH" --train_batch_size "$PPO_TRAIN_BATCH" \
  --max_input_len "${PPO_INPUT_LEN:-96}" --max_new_tokens "$PPO_NEW_TOKENS" --top_k 50 \
  --lr "$PPO_LR" --critic_lr "$PPO_CRITIC_LR" --kl_coef "$PPO_KL" \
  ${PPO_PROMPTS:+--max_datasets_size "$PPO_PROMPTS"} \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/ppo" "$@"
