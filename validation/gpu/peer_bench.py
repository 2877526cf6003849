#!/usr/bin/env python3
"""Same-GPU PyTorch peer for `validate bench --device cuda --model base --peer validation/gpu/peer_bench.py`.

ViT-B/16 (timm `vit_base_patch16_224`, random init, 10 classes), batch 128: one AdamW
forward+backward+update step per strategy that peft supports (full, linear probing, BitFit by
hand, LoRA r=8 alpha=8 and (IA)^3 via peft on timm's fused qkv and the MLP), in f32 and bf16
autocast, and PGD-15 (eps 1/255, alpha 0.25/255, random start, all steps) on 128 images.
The last line printed is one JSON object; its top-level train_step_ms / eval_batch_ms / pgd15_s
are the full-fine-tuning f32 numbers `validate bench --peer` compares against.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def make(strategy, classes=10):
    import timm

    m = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=classes)
    if strategy == "full":
        return m
    for p in m.parameters():
        p.requires_grad_(False)
    for p in m.head.parameters():
        p.requires_grad_(True)
    if strategy == "linear_probe":
        return m
    if strategy == "bitfit":
        for n, p in m.named_parameters():
            if n.endswith(".bias"):
                p.requires_grad_(True)
        return m
    import peft

    if strategy == "lora":
        cfg = peft.LoraConfig(r=8, lora_alpha=8, target_modules=["qkv", "fc1", "fc2"], modules_to_save=["head"])
    elif strategy == "ia3":
        cfg = peft.IA3Config(target_modules=["qkv", "fc1", "fc2"], feedforward_modules=["fc2"], modules_to_save=["head"])
    else:
        raise ValueError(strategy)
    return peft.get_peft_model(m, cfg)


def timed(fn, reps, sync):
    fn()
    sync()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def pgd(model, x, y, eps=1 / 255, alpha=0.25 / 255, steps=15):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model((adv - 0.5) / 0.5), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--strategies", default="full,linear_probe,bitfit,lora,ia3")
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    rows = {}
    for s in args.strategies.split(","):
        try:
            model = make(s).to(dev)
        except Exception as e:  # a strategy peft cannot build here
            rows[s] = {"error": str(e)}
            continue
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step(bf16):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model((x - 0.5) / 0.5), y)
            loss.backward()
            opt.step()

        row = {
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train_step_ms_f32": timed(lambda: step(False), args.reps, sync) * 1e3,
            "train_step_ms_bf16": timed(lambda: step(True), args.reps, sync) * 1e3,
        }
        if dev == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if s == "full":
            model.eval()
            with torch.no_grad():
                row["eval_batch_ms"] = timed(lambda: model((x - 0.5) / 0.5), args.reps, sync) * 1e3
            row["pgd15_s"] = timed(lambda: pgd(model, x, y), 1, sync)
        rows[s] = row
        print(json.dumps({s: row}), flush=True)
        del model, opt
        if dev == "cuda":
            torch.cuda.empty_cache()
    full = rows.get("full", {})
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "train_step_ms": full.get("train_step_ms_f32", float("nan")),
        "eval_batch_ms": full.get("eval_batch_ms", float("nan")),
        "pgd15_s": full.get("pgd15_s", float("nan")),
        "strategies": rows,
    }))


if __name__ == "__main__":
    main()
