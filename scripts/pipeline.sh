#!/usr/bin/env bash
# The whole RLHF pipeline on the default model and the shipped data: SFT → reward model → PPO, each stage's output
# feeding the next, then a summary and an HTML report. `--tiny` runs a few steps per stage and checks that every
# output reloads (what CI runs). Settings come from the environment (see the stage scripts).
set -euo pipefail
source "$(dirname "$0")/common.sh"
TINY=
for a in "$@"; do case $a in --tiny) TINY=1 ;; -h|--help) sed -n '2,4p' "$0"; exit 0 ;; *) echo "unknown argument $a" >&2; exit 2 ;; esac; done
export OUT=${OUT:-runs/pipeline}
if [ -n "$TINY" ]; then
  export OUT=${OUT%/}-tiny
  # A few steps per stage; any of these may be preset in the environment.
  : "${SFT_SAMPLES:=24}" "${SFT_EPOCHS:=1}" "${SFT_MAX_LEN:=128}" "${RM_SAMPLES:=24}" "${RM_EPOCHS:=1}" "${RM_MAX_LEN:=96}"
  : "${PPO_EPISODES:=2}" "${PPO_COLLECT:=1}" "${PPO_UPDATES:=1}" "${PPO_EXP_BATCH:=4}" "${PPO_TRAIN_BATCH:=4}"
  : "${PPO_NEW_TOKENS:=8}" "${PPO_PROMPTS:=16}" "${PPO_INPUT_LEN:=64}"
  export SFT_SAMPLES SFT_EPOCHS SFT_MAX_LEN RM_SAMPLES RM_EPOCHS RM_MAX_LEN PPO_EPISODES PPO_COLLECT PPO_UPDATES \
    PPO_EXP_BATCH PPO_TRAIN_BATCH PPO_NEW_TOKENS PPO_PROMPTS PPO_INPUT_LEN
fi
rm -rf "$OUT"
mkdir -p "$OUT"
stage() {
  local name=$1; shift
  echo "=== $name ==="
  local t0=$SECONDS
  "$@"
  echo "$name $((SECONDS - t0))" >> "$OUT/times.txt"
}
stage sft bash "$ROOT/scripts/train_sft.sh"
stage rm bash "$ROOT/scripts/train_rm.sh"
stage ppo bash "$ROOT/scripts/train_prompts.sh"
if [ -n "$TINY" ]; then
  # Every stage's output must load in a later stage / inference with no extra flags.
  # Language models generate; the reward model and the critic score (inference refuses them).
  for d in sft ppo; do
    [ -d "$OUT/$d" ] || continue
    cli inference --pretrain "$OUT/$d" --input "Hello" --max_new_tokens 2 --backend "${BACKEND:-auto}" > /dev/null
    echo "reloaded $OUT/$d"
  done
  for d in rm ppo/critic; do
    [ -d "$OUT/$d" ] || continue
    cli score --rm_path "$OUT/$d" --input "Hello, how are you today?" --backend "${BACKEND:-auto}" > /dev/null
    echo "reloaded $OUT/$d"
  done
fi
cli report --log_dir "$OUT/sft/logs" --log_dir "$OUT/rm/logs" --log_dir "$OUT/ppo/logs" --out "$OUT/report.html"
node "$ROOT/scripts/pipeline_summary.mjs" "$OUT"
