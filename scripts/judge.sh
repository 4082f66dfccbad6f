#!/usr/bin/env bash
# Stage 4: the real objective, separate from the proxy reward. The SFT and the PPO model answer the same held-out
# prompts (the end of the alpaca file, which neither the labelling, the reward model nor PPO used), greedy and
# sampled; the sentiment judge scores every answer (PPO never saw it), the reward model too (the over-optimisation
# gap is the RM's gain minus the judge's). Writes $OUT/judge.json. Extra arguments go to judge.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
cli judge --pretrain "${SFT_OUT:-$OUT/sft}" "${PPO_OUT:-$OUT/ppo}" --names sft,ppo \
  --prompts "${JUDGE_PROMPTS_FILE:-$ROOT/datasets/full/alpaca_en_demo.json}" \
  --skip_prompts "${JUDGE_SKIP:-871}" --num_prompts "${JUDGE_PROMPTS:-128}" \
  --rm_path "${RM_OUT:-$OUT/rm}" --decoding greedy,sampled \
  --max_input_len "${JUDGE_INPUT_LEN:-96}" --max_new_tokens "${JUDGE_NEW_TOKENS:-20}" --batch_size "${JUDGE_BATCH:-64}" \
  --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
  --out "$OUT/judge.json" "$@"
