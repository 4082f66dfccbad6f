#!/usr/bin/env bash
# nanoGPT's shakespeare_char recipe (config/train_shakespeare_char.py) with this project's commands:
#   1. prepare   tinyshakespeare → character vocabulary, train.bin / val.bin (90/10), meta.json
#   2. train     a fresh GPT-2-style model from config on random blocks (block inputs x = data[i:i+T], targets
#                y = data[i+1:i+T+1], as nanoGPT's get_batch), cosine lr 1e-3 → 1e-4 with 100 warm-up steps counted
#                as nanoGPT counts them (--warmup_start one: lr·(it+1)/(warmup+1)),
#                AdamW beta2 0.99, weight decay 0.1 (not on norms), grad clip 1.0, eval every 250 steps, best checkpoint
#                kept; no biases in Linear/LayerNorm (rlhf_bias=false: nanoGPT's bias=False; the saved model still
#                loads in transformers as GPT-2, with zero biases); nanoGPT's exact GELU (activation_function=gelu)
#   3. sample    from the best checkpoint, starting from a newline (nanoGPT's sample.py settings); one block's worth
#                of characters, since generation here does not slide the context past the position table
# Usage: bash scripts/shakespeare_char.sh [--cpu] [OUT_DIR]
#   default: 6 layers, 6 heads, 384 wide, block 256, batch 64, dropout 0.2, 5000 steps (a GPU run: BACKEND=webgpu);
#            dropout on the embeddings, the attention probabilities and the residual branches, as nanoGPT's
#   --cpu:   nanoGPT's CPU variant: 4 layers, 4 heads, 128 wide, block 64, batch 12, dropout 0, 2000 steps,
#            eval on 20 batches (eval_iters 20)
# The last line printed is `best val loss <x> at step <n>`. MAX_STEPS=N shortens the run (a smoke test); SEED=N
# changes the seed (default 1337, as nanoGPT).
# scripts/nanogpt_reference.py trains the same model and loop in PyTorch on the same files, for a side-by-side
# (--replay: from this project's initial weights on the blocks train_sft draws, the same run step for step).
set -euo pipefail
source "$(dirname "$0")/common.sh"
CPU=0
if [ "${1:-}" = "--cpu" ]; then CPU=1; shift; fi
OUT=${1:-runs/shakespeare_char$([ $CPU = 1 ] && echo -cpu)}
BACKEND=${BACKEND:-auto}
DATA="$OUT/data"
# The compiled CLI may predate the `prepare` command: then run the sources.
[ -f "$ROOT/dist/cli/prepare.js" ] || export RLHF_FROM_SOURCE=1

# 1. prepare (nanoGPT: data/shakespeare_char/prepare.py)
cli prepare "$ROOT/datasets/full/tinyshakespeare.txt" --tokenizer char --output_dir "$DATA"

# 2. train (nanoGPT: train.py config/train_shakespeare_char.py [CPU overrides])
if [ $CPU = 1 ]; then
  MODEL="n_layer=4,n_head=4,n_embd=128,resid_pdrop=0,embd_pdrop=0,attn_pdrop=0,rlhf_bias=false,activation_function=gelu"
  SHAPE=(--max_len 64 --batch_size 12 --max_steps ${MAX_STEPS:-2000} --decay_steps ${MAX_STEPS:-2000} --eval_iters 20)
  SAMPLE_TOKENS=63
else
  MODEL="n_layer=6,n_head=6,n_embd=384,resid_pdrop=0.2,embd_pdrop=0.2,attn_pdrop=0.2,rlhf_bias=false,activation_function=gelu"
  SHAPE=(--max_len 256 --batch_size 64 --max_steps ${MAX_STEPS:-5000} --decay_steps ${MAX_STEPS:-5000} --eval_iters 200)
  SAMPLE_TOKENS=255
fi
START=$(date +%s)
cli train_sft --from_config "gpt2:$MODEL" --tokenizer "$DATA" \
  --dataset "$DATA/train.bin" --eval_dataset "$DATA/val.bin" "${SHAPE[@]}" \
  --lr 1e-3 --lr_scheduler cosine_with_min_lr --min_lr 1e-4 --warmup_steps 100 --warmup_start one \
  --adam_beta2 0.99 --weight_decay 0.1 --grad_clip 1.0 \
  --eval_steps 250 --logging_steps 10 --save_best \
  --backend "$BACKEND" --seed "${SEED:-1337}" --save_path "$OUT/model"
SECONDS_TRAINED=$(( $(date +%s) - START ))

# 3. sample (nanoGPT: sample.py --out_dir=..., temperature 0.8, top_k 200)
cli inference --pretrain "$OUT/model/best" --input $'\n' --max_new_tokens "$SAMPLE_TOKENS" --do_sample true --temperature 0.8 --top_k 200 \
  --backend "$BACKEND" --seed 1337

echo "trained in ${SECONDS_TRAINED} s"
node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log(`best val loss ${s.best_metric.toFixed(4)} at step ${s.best_step}`);
' "$OUT/model/trainer_state.json"
