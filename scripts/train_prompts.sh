#!/usr/bin/env bash
# Stage 3: PPO. Actor and initial model from the SFT output, reward model and critic from the RM output.
# Extra arguments go to train_prompts.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
cli train_prompts "${PROMPTS:-$ROOT/datasets/prompts/awesome-chatgpt-prompts.csv}" \
  --pretrain "${SFT_OUT:-$OUT/sft}" --rm_path "${RM_OUT:-$OUT/rm}" \
  --prompt_template "${TEMPLATE:-alpaca}" \
  --num_episodes "${PPO_EPISODES:-4}" --num_collect_steps "${PPO_COLLECT:-2}" --num_update_steps "${PPO_UPDATES:-2}" \
  --experience_batch_size "${PPO_EXP_BATCH:-8}" --train_batch_size "${PPO_TRAIN_BATCH:-8}" \
  --max_input_len "${PPO_INPUT_LEN:-96}" --max_new_tokens "${PPO_NEW_TOKENS:-32}" --top_k 50 \
  --lr "${PPO_LR:-5e-5}" --critic_lr "${PPO_CRITIC_LR:-1e-4}" --kl_coef 0.05 \
  ${PPO_PROMPTS:+--max_datasets_size "$PPO_PROMPTS"} \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --save_path "$OUT/ppo" "$@"
