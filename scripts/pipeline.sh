#!/usr/bin/env bash
# The whole RLHF pipeline on the default model: SFT → labelled pairs → reward model → PPO → judge, each stage's output
# feeding the next, then summary.json and an HTML report (runs/pipeline/). The labeler and the judge are the AFINN
# sentiment lexicon: the reward model learns it from ranked pairs only, PPO optimises the reward model only, and the
# judge scores held-out prompts before and after. `--data hh-rlhf`: the reward model on hh-rlhf's human preference
# pairs instead (the real-data route, meant for real models), PPO on awesome-chatgpt-prompts, no judge.
# `--tiny` runs a few steps per stage and checks that every output reloads (what CI runs). Settings come from the
# environment (see the stage scripts).
set -euo pipefail
source "$(dirname "$0")/common.sh"
TINY=
DATA=sentiment
while [ $# -gt 0 ]; do
  case $1 in
    --tiny) TINY=1 ;;
    --data) DATA=${2:-}; shift ;;
    --data=*) DATA=${1#--data=} ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case $DATA in sentiment|hh-rlhf) ;; *) echo "--data: unknown \"$DATA\" (choose sentiment or hh-rlhf)" >&2; exit 2 ;; esac
export OUT=${OUT:-runs/pipeline}
[ "$DATA" = hh-rlhf ] && OUT=${OUT%/}-hh-rlhf
if [ -n "$TINY" ]; then
  export OUT=${OUT%/}-tiny
  # A few steps per stage (the tiny labelling pairs any two different answers: mechanics only); any of these may be
  # preset in the environment.
  : "${SFT_SAMPLES:=24}" "${SFT_EPOCHS:=1}" "${SFT_MAX_LEN:=128}" "${RM_SAMPLES:=24}" "${RM_EPOCHS:=1}"
  : "${LABEL_PROMPTS:=16}" "${LABEL_EVAL_PROMPTS:=8}" "${LABEL_SAMPLES:=3}" "${LABEL_NEW_TOKENS:=8}" "${LABEL_MIN_GAP:=0}"
  : "${PPO_EPISODES:=2}" "${PPO_COLLECT:=1}" "${PPO_UPDATES:=1}" "${PPO_EXP_BATCH:=4}" "${PPO_TRAIN_BATCH:=4}"
  : "${PPO_NEW_TOKENS:=8}" "${PPO_PROMPTS:=16}" "${JUDGE_PROMPTS:=8}" "${JUDGE_NEW_TOKENS:=8}" "${RELABEL_PROMPTS:=8}"
  export SFT_SAMPLES SFT_EPOCHS SFT_MAX_LEN RM_SAMPLES RM_EPOCHS LABEL_PROMPTS LABEL_EVAL_PROMPTS LABEL_SAMPLES \
    LABEL_NEW_TOKENS LABEL_MIN_GAP PPO_EPISODES PPO_COLLECT PPO_UPDATES PPO_EXP_BATCH PPO_TRAIN_BATCH PPO_NEW_TOKENS \
    PPO_PROMPTS JUDGE_PROMPTS JUDGE_NEW_TOKENS RELABEL_PROMPTS
fi
# ROUNDS=2 (the default with the labeler): label → reward model → PPO, then the labeler ranks the round-1 policy's
# answers, the reward model trains on them, and PPO runs again from the SFT model. ROUNDS=1: one round.
ROUNDS=${ROUNDS:-$([ "$DATA" = sentiment ] && echo 2 || echo 1)}
case $ROUNDS in 1|2) ;; *) echo "ROUNDS: 1 or 2, got \"$ROUNDS\"" >&2; exit 2 ;; esac
[ "$DATA" = sentiment ] || ROUNDS=1
export DATA ROUNDS
rm -rf "$OUT"
mkdir -p "$OUT"
# CPU seconds (user + sys) of this shell's finished child processes so far: bash's `times`, second line. Called
# directly, never inside $(…): a subshell's `times` counts only its own children.
child_cpu() {
  times > "$OUT/.times"
  CHILD_CPU=$(awk 'function s(x, a) { split(x, a, "m"); sub("s", "", a[2]); return a[1] * 60 + a[2] } NR == 2 { printf "%.1f", s($1) + s($2) }' "$OUT/.times")
}
# times.txt: one line per stage, "name wall_seconds cpu_seconds" (CPU time tells the cost on a loaded machine).
stage() {
  local name=$1; shift
  echo "=== $name ==="
  local t0=$SECONDS c0
  child_cpu
  c0=$CHILD_CPU
  "$@"
  child_cpu
  echo "$name $((SECONDS - t0)) $(awk -v a="$c0" -v b="$CHILD_CPU" 'BEGIN { printf "%.1f", b - a }')" >> "$OUT/times.txt"
}
stage sft bash "$ROOT/scripts/train_sft.sh"
if [ "$DATA" = sentiment ] && [ "$ROUNDS" = 2 ]; then
  # Iterated RLHF: round 1's PPO policy shows what the reward model over-rates; the labeler ranks its answers, the
  # reward model learns from them (round 2), and PPO continues from the round-1 policy against the round-2 reward
  # model, its KL penalty still measured from the SFT model.
  stage label bash "$ROOT/scripts/label_pairs.sh"
  stage rm1 bash "$ROOT/scripts/train_rm.sh" --save_path "$OUT/round1/rm"
  RM_OUT="$OUT/round1/rm" stage ppo1 bash "$ROOT/scripts/train_prompts.sh" --save_path "$OUT/round1/ppo"
  stage relabel bash "$ROOT/scripts/relabel.sh"
  RM_ROUND=2 stage rm bash "$ROOT/scripts/train_rm.sh"
  stage ppo bash "$ROOT/scripts/train_prompts.sh" --pretrain "$OUT/round1/ppo" --ref_pretrain "${SFT_OUT:-$OUT/sft}"
else
  [ "$DATA" = sentiment ] && stage label bash "$ROOT/scripts/label_pairs.sh"
  stage rm bash "$ROOT/scripts/train_rm.sh"
  stage ppo bash "$ROOT/scripts/train_prompts.sh"
fi
[ "$DATA" = sentiment ] && stage judge bash "$ROOT/scripts/judge.sh"
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
node "$ROOT/scripts/pipeline_summary.mjs" "$OUT" --data "$DATA" --model "${PRETRAIN:-models/tiny-chat}" > "$OUT/summary.txt"
# The report: summary.json's headline at the top, the judge's side-by-side answers (when the judge ran), the charts.
JUDGE_ARGS=()
[ -f "$OUT/judge.json" ] && JUDGE_ARGS=(--judge "$OUT/judge.json")
cli report --log_dir "$OUT/sft/logs" --log_dir "$OUT/rm/logs" --log_dir "$OUT/ppo/logs" --summary "$OUT/summary.json" ${JUDGE_ARGS[@]+"${JUDGE_ARGS[@]}"} --out "$OUT/report.html"
cat "$OUT/summary.txt"
