#!/usr/bin/env python3
"""
A side-by-side reference for scripts/shakespeare_char.sh --cpu: the same GPT and training loop as nanoGPT's
shakespeare-char CPU recipe (model.py / train.py with config/train_shakespeare_char.py and its CPU overrides),
written in plain PyTorch, trained on the same train.bin / val.bin that `prepare` writes. Not a dependency of the
project: it only measures what PyTorch reaches on the same machine.

  python scripts/nanogpt_reference.py --data runs/shakespeare_char-cpu/data [--max_iters 2000] [--bias] [--seed 1337]

Replay (--init DIR --replay): start from this project's initial weights for the seed (a model directory; one
`train_sft --from_config ... --max_steps 1 --lr 0 --save_path DIR` step at lr 0 leaves them unchanged) and train on the
blocks train_sft draws for that seed (its generator is reproduced below), evaluating on its --eval_iters blocks; with
--compare DIR (the model train_sft saved) it prints how far the two sets of final weights are apart.

The model: pre-norm blocks, learned positions, tied embedding/head, GELU (erf), init N(0, 0.02) with every residual
output projection at 0.02/sqrt(2*n_layer), Linear and LayerNorm without biases unless --bias. The loop: AdamW
(betas 0.9/0.99, weight decay 0.1 on >= 2-D tensors only), grad clip 1.0, lr 1e-3 with 100 linear warm-up steps then
cosine to 1e-4 at --max_iters, batches of random blocks (inputs x[i:i+T], targets x[i+1:i+T+1]), evaluation every 250
iterations as the mean of --eval_iters random batches of val.bin. Prints `best val loss <x> at step <n>` and the time.
"""
import argparse
import array
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


M32 = 0xFFFFFFFF


class Mulberry32:
    """src/engine/rng.ts's generator, bit for bit (32-bit unsigned arithmetic), for --replay."""

    def __init__(self, seed):
        self.state = seed & M32

    def next(self):
        self.state = (self.state + 0x6D2B79F5) & M32
        t = self.state
        t = ((t ^ (t >> 15)) * (t | 1)) & M32
        t ^= (t + (((t ^ (t >> 7)) * (t | 61)) & M32)) & M32
        return (t ^ (t >> 14)) / 4294967296

    def int(self, n):
        return math.floor(self.next() * n)


def train_sft_offsets(seed, step, batches_per_epoch, span, batch_size):
    """The block offsets of train_sft's random batch `step` (src/data/token_bin.ts, TokenBlockLoader, rank 0)."""
    h = ((seed ^ 0x2545F491) * 0x9E3779B1) & M32
    for v in (0, step // batches_per_epoch, step % batches_per_epoch):
        h = ((h ^ (v + 0x7F4A7C15)) * 0x85EBCA77) & M32
    rng = Mulberry32(h ^ (h >> 15))
    return [rng.int(span) for _ in range(batch_size)]


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], 'little')
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        assert info['dtype'] == 'F32', f'{path}: {name} is {info["dtype"]}, expected F32'
        start, end = info['data_offsets']
        out[name] = torch.frombuffer(bytearray(raw[8 + n + start:8 + n + end]), dtype=torch.float32).reshape(info['shape'])
    return out


# this script's parameter names -> the GPT-2 layout train_sft saves (Conv1D weights stored [in, out]: transposed)
def gpt2_name(name):
    name = name.replace('tok.', 'transformer.wte.').replace('pos.', 'transformer.wpe.').replace('ln_f.', 'transformer.ln_f.')
    for ours, hf in (('ln1', 'ln_1'), ('ln2', 'ln_2'), ('qkv', 'attn.c_attn'), ('attn_out', 'attn.c_proj'), ('fc_out', 'mlp.c_proj'), ('fc', 'mlp.c_fc')):
        name = name.replace(f'.{ours}.', f'.{hf}.')
    return name.replace('blocks.', 'transformer.h.')


def load_gpt2_weights(model, path):
    w = read_safetensors(path)
    with torch.no_grad():
        for name, p in model.named_parameters():
            src = w[gpt2_name(name)]
            p.copy_(src.t() if name.endswith(('qkv.weight', 'attn_out.weight', 'fc.weight', 'fc_out.weight')) else src)
    return w


def read_tokens(path):
    ids = array.array('H')  # uint16, little-endian (numpy's layout on every platform this runs on)
    with open(path, 'rb') as f:
        ids.frombytes(f.read())
    return torch.tensor(ids, dtype=torch.long)


def layer_norm(width, bias):
    ln = nn.LayerNorm(width)
    if not bias:  # nn.LayerNorm(bias=False) of PyTorch >= 2.1, written so older versions run too
        ln.register_parameter('bias', None)
    return ln


def causal_attention(q, k, v, dropout):
    if hasattr(F, 'scaled_dot_product_attention'):  # PyTorch >= 2.0
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    T = q.shape[-2]  # older PyTorch: the same product written out, as nanoGPT's fallback
    att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))
    return F.dropout(F.softmax(att, dim=-1), dropout) @ v


class Block(nn.Module):
    def __init__(self, width, heads, bias, dropout):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln1 = layer_norm(width, bias)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.attn_out = nn.Linear(width, width, bias=bias)
        self.ln2 = layer_norm(width, bias)
        self.fc = nn.Linear(width, 4 * width, bias=bias)
        self.fc_out = nn.Linear(4 * width, width, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = causal_attention(q, k, v, self.dropout if self.training else 0.0)
        x = x + self.drop(self.attn_out(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, heads, width, bias, dropout):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(block, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, bias, dropout) for _ in range(layers))
        self.ln_f = layer_norm(width, bias)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(('attn_out.weight', 'fc_out.weight')) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith('bias'):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.drop(self.tok(idx) + self.pos(torch.arange(T)))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True, help='directory with train.bin, val.bin, meta.json (from `prepare`)')
    ap.add_argument('--max_iters', type=int, default=2000)
    ap.add_argument('--eval_interval', type=int, default=250)
    ap.add_argument('--eval_iters', type=int, default=20)
    ap.add_argument('--block_size', type=int, default=64)
    ap.add_argument('--batch_size', type=int, default=12)
    ap.add_argument('--n_layer', type=int, default=4)
    ap.add_argument('--n_head', type=int, default=4)
    ap.add_argument('--n_embd', type=int, default=128)
    ap.add_argument('--dropout', type=float, default=0.0)
    ap.add_argument('--bias', action='store_true', help='biases in Linear and LayerNorm (nanoGPT: bias=False)')
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--init', help='start from these weights (a GPT-2 model directory saved by train_sft) instead of a random init')
    ap.add_argument('--replay', action='store_true', help="train and evaluate on train_sft's blocks for --seed (with --init: the same run in PyTorch)")
    ap.add_argument('--compare', help='after training, the relative distance of the final weights to this model directory')
    ap.add_argument('--full_eval', action='store_true',
                    help='after training, also the loss over every block of val.bin in order, as train_sft evaluates '
                         'without --eval_iters (inputs val[kT:kT+T], targets val[kT+1:kT+T+1] for every whole block)')
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train = read_tokens(os.path.join(a.data, 'train.bin'))
    val = read_tokens(os.path.join(a.data, 'val.bin'))
    with open(os.path.join(a.data, 'meta.json')) as f:
        vocab = json.load(f)['vocab_size']

    batches_per_epoch = (len(train) - 1) // a.block_size // a.batch_size
    eval_rng = Mulberry32(a.seed ^ 0xE7A15EED)
    eval_offsets = [eval_rng.int(len(val) - a.block_size) for _ in range(a.eval_iters * a.batch_size)]

    def blocks(data, offsets):
        return (torch.stack([data[j:j + a.block_size] for j in offsets]),
                torch.stack([data[j + 1:j + 1 + a.block_size] for j in offsets]))

    def batch(data, step=None):
        if a.replay:
            if step is None:
                raise AssertionError('replay draws train batches by step')
            return blocks(data, train_sft_offsets(a.seed, step, batches_per_epoch, len(data) - a.block_size, a.batch_size))
        i = torch.randint(len(data) - a.block_size, (a.batch_size,))
        x = torch.stack([data[j:j + a.block_size] for j in i])
        y = torch.stack([data[j + 1:j + 1 + a.block_size] for j in i])
        return x, y

    model = GPT(vocab, a.block_size, a.n_layer, a.n_head, a.n_embd, a.bias, a.dropout)
    if a.init:
        load_gpt2_weights(model, os.path.join(a.init, 'model.safetensors'))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': other, 'weight_decay': 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    lr_max, lr_min, warmup = 1e-3, 1e-4, 100

    def lr_at(it):
        if it < warmup:
            return lr_max * (it + 1) / (warmup + 1)
        r = min(1.0, (it - warmup) / max(1, a.max_iters - warmup))
        return lr_min + 0.5 * (1 + math.cos(math.pi * r)) * (lr_max - lr_min)

    @torch.no_grad()
    def val_loss():
        model.eval()
        if a.replay:  # train_sft's fixed evaluation blocks, in its batches
            out = sum(model(*blocks(val, eval_offsets[k * a.batch_size:(k + 1) * a.batch_size])).item() for k in range(a.eval_iters)) / a.eval_iters
        else:
            out = sum(model(*batch(val)).item() for _ in range(a.eval_iters)) / a.eval_iters
        model.train()
        return out

    print(f'params {sum(p.numel() for p in model.parameters()):,} (torch {torch.__version__}, {torch.get_num_threads()} threads)')
    best, best_step = float('inf'), 0
    start = time.time()
    for it in range(a.max_iters + 1):
        if it % a.eval_interval == 0 or it == a.max_iters:
            v = val_loss()
            if v < best:
                best, best_step = v, it
            print(f'step {it}: val loss {v:.4f} ({time.time() - start:.1f} s)', flush=True)
        if it == a.max_iters:
            break
        for g in opt.param_groups:
            g['lr'] = lr_at(it)
        loss = model(*batch(train, it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    print(f'trained in {time.time() - start:.1f} s')
    if a.full_eval:
        model.eval()
        T = a.block_size
        n = (len(val) - 1) // T  # each block needs the token after its inputs
        x, y = val[:n * T].view(n, T), val[1:n * T + 1].view(n, T)
        with torch.no_grad():
            total = sum(model(bx, by).item() * len(bx) for bx, by in zip(x.split(a.batch_size), y.split(a.batch_size)))
        print(f'final model, every block of val.bin: loss {total / n:.4f} ({n} blocks)')
    if a.compare:
        w = read_safetensors(os.path.join(a.compare, 'model.safetensors'))
        def theirs(n):
            t = w[gpt2_name(n)]
            return t.t() if n.endswith(('qkv.weight', 'attn_out.weight', 'fc.weight', 'fc_out.weight')) else t
        with torch.no_grad():
            worst = max((((p - theirs(n)).norm() / p.norm()).item(), n) for n, p in model.named_parameters())
        print(f'final weights vs {a.compare}: largest relative difference {worst[0]:.2e} ({worst[1]})')
    print(f'best val loss {best:.4f} at step {best_step}')


if __name__ == '__main__':
    main()
