#!/usr/bin/env bash
# Stage 2: a reward model from the SFT output. DATA=sentiment (the default pipeline): on the pairs scripts/label_pairs.sh
# ranked, held-out pairs from other prompts; the reward is the sum of the values over the answer's tokens only
# (answer_sum: the lexicon's score is a sum over the answer's words), 2 epochs, a prompt's pairs batched together
# (--group_by_prompt: each of its 16 answers scored once per batch; 64 pairs are about two prompts' answers), 32
# tokens (the answer's 20 and the end of the prompt: the lexicon needs no more context). RM_ROUND=2: the round-1 reward model trained on
# the pairs scripts/relabel.sh ranked from the round-1 PPO policy's answers. DATA=hh-rlhf: on hh-rlhf's human
# preference pairs. Extra arguments go to train_reward_model.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/pipeline}
if [ "${DATA:-sentiment}" = hh-rlhf ]; then
  cli train_reward_model \
    --pretrain "${SFT_OUT:-$OUT/sft}" \
    --dataset "${RM_DATA:-$ROOT/datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz}" \
    --prompt_template human_assistant --loss_fn log_sig \
    --max_len "${RM_MAX_LEN:-128}" --batch_size "${RM_BATCH:-8}" --max_epochs "${RM_EPOCHS:-2}" \
    ${RM_SAMPLES:+--max_datasets_size "$RM_SAMPLES"} --lr "${RM_LR:-3e-4}" --eval_ratio 0.2 \
    --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
    --save_path "$OUT/rm" "$@"
else
  if [ "${RM_ROUND:-1}" = 2 ]; then
    # round 2: the round-1 reward model (its value head too) trained one epoch more on the round-2 pairs only
    FROM=${RM1_OUT:-$OUT/round1/rm}; PAIRS=${RM_DATA:-$OUT/pairs/round2.jsonl}; EPOCHS=${RM2_EPOCHS:-1}; LR=${RM2_LR:-5e-4}
  else
    FROM=${SFT_OUT:-$OUT/sft}; PAIRS=${RM_DATA:-$OUT/pairs/train.jsonl}; EPOCHS=${RM_EPOCHS:-2}; LR=${RM_LR:-1e-3}
  fi
  cli train_reward_model \
    --pretrain "$FROM" \
    --dataset "$PAIRS" --eval_dataset "${RM_EVAL_DATA:-$OUT/pairs/eval.jsonl}" \
    --prompt_template "${TEMPLATE:-alpaca}" --loss_fn log_sig --reward_reduction "${RM_REDUCTION:-answer_sum}" --group_by_prompt \
    --max_len "${RM_MAX_LEN:-32}" --batch_size "${RM_BATCH:-64}" --max_epochs "$EPOCHS" \
    ${RM_SAMPLES:+--max_datasets_size "$RM_SAMPLES"} --lr "$LR" --weight_decay 0.1 --warmup_ratio 0.1 \
    ${RM_LORA:+--lora_rank "$RM_LORA" --lora_target all-linear --merge_lora_weights} \
    --backend "${BACKEND:-auto}" --seed "${SEED:-42}" \
    --save_path "$OUT/rm" "$@"
fi
