#!/usr/bin/env python3
"""The bench's shapes in PyTorch on the CPU (transformers' models, random weights from the config), in the units
`npm run bench` prints, so the ratio between the two can be reproduced on any machine:

    python scripts/bench_vs_torch.py --model tiny-chat            # the default model's shape (models/tiny-chat)
    python scripts/bench_vs_torch.py --model gpt2-124m --quick
    npm run bench -- foundation --model tiny-chat --vs-torch      # both, side by side (RLHF_TORCH_PYTHON picks python)

Cases (each timed after one warm-up, median of --steps):
  fwd+bwd tokens/s       B x T tokens per forward + causal-LM loss + backward, dropout on (bench `foundation`)
  SFT tokens/s           the same plus gradient clipping at 1 and AdamW (lr 2e-5, decay 0.01); the first quarter of
                         every row is prompt (labels -100) (bench `sft`)
  generate new tokens/s  greedy, KV cache, exactly --new-tokens per row, prefill included (bench `foundation`)
Prints a table, then one JSON object as the last line (and in --json FILE).
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GPT2_124M = {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "vocab_size": 50257}


def load_config(args):
    from transformers import AutoConfig

    if args.config:
        with open(args.config) as f:
            raw = json.load(f)
    elif args.model == "tiny-chat":
        with open(os.path.join(ROOT, "models", "tiny-chat", "config.json")) as f:
            raw = json.load(f)
    elif args.model == "gpt2-124m":
        raw = dict(GPT2_124M)
    else:
        sys.exit(f"unknown --model {args.model} (tiny-chat, gpt2-124m, or give --config FILE)")
    raw = {k: v for k, v in raw.items() if k not in ("rlhf", "dtype", "torch_dtype", "architectures")}
    model_type = raw.pop("model_type")
    return AutoConfig.for_model(model_type, **raw)


def timed(fn, steps):
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-chat", help="tiny-chat (models/tiny-chat/config.json) or gpt2-124m")
    p.add_argument("--config", help="an HF config.json to build the model from instead")
    p.add_argument("--cases", default="train,sft,generate", help="comma-separated: train, sft, generate")
    p.add_argument("--batch", type=int, default=8, help="fwd+bwd batch (8)")
    p.add_argument("--seq", type=int, default=128, help="fwd+bwd sequence length (128)")
    p.add_argument("--sft-batch", type=int, default=8, help="SFT batch (8)")
    p.add_argument("--sft-seq", type=int, default=512, help="SFT sequence length (512)")
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, help="generated tokens per row (128; --quick 16)")
    p.add_argument("--steps", type=int, help="timed steps (2; --quick 1)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's, the cores)")
    p.add_argument("--json", help="also write the JSON result to this file")
    args = p.parse_args()
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        sys.exit(f"bench_vs_torch: needs torch and transformers ({e}); pip install torch transformers")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (1 if args.quick else 2)
    new_tokens = args.new_tokens or (16 if args.quick else 128)
    torch.manual_seed(0)
    config = load_config(args)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager" if config.model_type == "gpt2" else "sdpa")
    model.float()
    V = config.vocab_size
    g = torch.Generator().manual_seed(1)
    rows, metrics = [], {}
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]

    if "train" in cases:
        ids = torch.randint(0, V, (args.batch, args.seq), generator=g)
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()

        wall, cpu = timed(step, steps)
        tps = args.batch * args.seq / wall
        rows.append(("fwd+bwd tokens/s", tps, "tok/s", f"B={args.batch} T={args.seq}; CPU {cpu:.2f} s per step"))
        metrics.update(train_tokens_per_s=tps, train_step_s=wall)

    if "sft" in cases:
        ids = torch.randint(0, V, (args.sft_batch, args.sft_seq), generator=g)
        labels = ids.clone()
        labels[:, : args.sft_seq >> 2] = -100
        decay = [p_ for n, p_ in model.named_parameters() if p_.ndim >= 2]
        no_decay = [p_ for n, p_ in model.named_parameters() if p_.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=2e-5)
        model.train()

        def sft_step():
            opt.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        wall, cpu = timed(sft_step, steps)
        tps = args.sft_batch * args.sft_seq / wall
        rows.append(("SFT tokens/s", tps, "tok/s", f"B={args.sft_batch} T={args.sft_seq}, AdamW; CPU {cpu:.2f} s per step"))
        metrics.update(sft_tokens_per_s=tps, sft_step_s=wall)

    if "generate" in cases:
        prompts = torch.randint(0, V, (args.gen_batch, args.prompt_len), generator=g)
        model.eval()

        def gen():
            with torch.inference_mode():
                out = model.generate(
                    input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0,
                )
            assert out.shape[1] == args.prompt_len + new_tokens

        wall, cpu = timed(gen, 1)
        tps = args.gen_batch * new_tokens / wall
        rows.append(("generate new tokens/s", tps, "tok/s", f"B={args.gen_batch} prompt={args.prompt_len} new={new_tokens}, greedy, KV cache, prefill included; CPU {cpu:.2f} s"))
        metrics.update(generate_tokens_per_s=tps, generate_s=wall, generate_cpu_s=cpu)

    name = args.config or args.model
    print(f"torch {torch.__version__} + transformers {transformers.__version__} on CPU, {torch.get_num_threads()} thread(s), model {name} "
          f"({sum(p_.numel() for p_ in model.parameters()) / 1e6:.2f}M parameters), load {os.getloadavg()[0]:.1f}")
    w = max(len(r[0]) for r in rows) if rows else 6
    for m, v, u, note in rows:
        print(f"{m.ljust(w)}  {v:10.1f}  {u}  {note}")
    result = {"suite": "torch", "torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
              "model": name, "load": os.getloadavg()[0], "metrics": metrics}
    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
