#!/usr/bin/env bash
# Reproduces models/tiny-chat with this project's own train_sft: a small LLaMA-style model pretrained from scratch
# on real text (Shakespeare, Tang/Song poetry, the alpaca/BELLE answers) with the 6,400-token minimind tokenizer,
# then SFT on alpaca (English + Chinese) with the alpaca template, then stored in bf16.
# Usage: bash scripts/train_default_model.sh [OUT_DIR]   (BACKEND=webgpu on a GPU machine; default auto)
#        PRETRAIN_EPOCHS (default 1), SFT_SAMPLES (1200) and SFT_EPOCHS (1) set the amount of training.
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${1:-runs/default-model}
BACKEND=${BACKEND:-auto}
mkdir -p "$OUT"

# 1. The corpus: the first 400 KB of tinyshakespeare, the poetry, and every alpaca/BELLE answer as plain text.
head -c 400000 "$ROOT/datasets/full/tinyshakespeare.txt" > "$OUT/shakespeare_400k.txt"
node "$ROOT/scripts/extract_answers.mjs" "$ROOT/datasets/full/alpaca_en_demo.json" "$ROOT/datasets/full/alpaca_zh_demo.json" \
  "$ROOT/datasets/sft/belle-dev1K.json" > "$OUT/answers.txt"

# 2. Pretraining from scratch: 4 layers, 192 wide, 6 heads (3 KV heads), SwiGLU 512, tied embeddings (2.85M params).
cli train_sft \
  --from_config "llama:hidden_size=192,num_hidden_layers=4,num_attention_heads=6,num_key_value_heads=3,intermediate_size=512,max_position_embeddings=512,tie_word_embeddings=true,rope_theta=10000" \
  --tokenizer "$ROOT/datasets/tokenizers/minimind" \
  --dataset "$OUT/shakespeare_400k.txt" "$ROOT/datasets/pretrain/tangshi300.json" "$ROOT/datasets/pretrain/songci300.json" "$OUT/answers.txt" \
  --max_len 256 --batch_size 16 --max_epochs "${PRETRAIN_EPOCHS:-1}" --lr 2e-3 --warmup_ratio 0.05 --weight_decay 0.1 --eval_ratio 0.01 \
  --save_steps 40 --need_optim_ckpt --backend "$BACKEND" --seed 1 --save_path "$OUT/pretrain"

# 3. SFT on alpaca, English and Chinese, in the alpaca template.
cli train_sft --pretrain "$OUT/pretrain" \
  --dataset "$ROOT/datasets/full/alpaca_en_demo.json" "$ROOT/datasets/full/alpaca_zh_demo.json" \
  --prompt_template alpaca --max_len 192 --batch_size 8 --max_epochs "${SFT_EPOCHS:-1}" --max_datasets_size "${SFT_SAMPLES:-1200}" \
  --lr 1e-3 --warmup_ratio 0.03 --eval_ratio 0.02 --backend "$BACKEND" --seed 1 --save_path "$OUT/sft"

# 4. Ship it in bf16.
cli convert --pretrain "$OUT/sft" --dtype bf16 --backend "$BACKEND" --save_path "$ROOT/models/tiny-chat"
