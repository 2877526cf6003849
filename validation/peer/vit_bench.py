#!/usr/bin/env python3
"""PyTorch eager peer of `validate bench` on CPU: the same ViT, batch, attack, timed the same way.

Model: ViT with dim 64, depth 4, 4 heads, MLP 256, 28x28x3 input, patch 4, CLS token, learned
position embeddings, pre-LN, erf-GELU, LayerNorm eps 1e-12, head on CLS, 10 classes; input
normalisation (x - 0.5) / 0.5 inside the model. Full fine-tuning AdamW step on batch 128, a clean
forward of the batch, and PGD-15 (eps 1/255, alpha 0.25/255, uniform random start, every point all
15 steps, as torchattacks). Prints one JSON object of median timings.

Optional: `pip install torch` (CPU is enough). `validate bench --peer`
runs it in the same session and prints the ratios.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-12)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-12)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = self.qkv(h).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        ctx = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(ctx)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, size=28, patch=4, dim=64, depth=4, heads=4, mlp=256, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch((x - 0.5) / 0.5).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x)[:, 0])


def pgd(model, x, y, eps=1 / 255, alpha=0.25 / 255, steps=15):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ViT(dim=args.dim, depth=args.depth, mlp=args.mlp)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    x = torch.rand(args.batch, 3, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def timed(fn, reps):
        fn()
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    train = timed(step, args.reps)
    model.eval()
    with torch.no_grad():
        ev = timed(lambda: model(x), args.reps)
    attack = timed(lambda: pgd(model, x, y), 1)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": args.threads,
        "train_step_ms": train * 1e3,
        "eval_batch_ms": ev * 1e3,
        "pgd15_s": attack,
    }))


if __name__ == "__main__":
    main()
