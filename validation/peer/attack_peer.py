#!/usr/bin/env python3
"""torchattacks on the same weights and the same images as `validate eval` (issue 17).

    python validation/peer/attack_peer.py --weights model.safetensors --images images.safetensors \
        --dim 64 --depth 4 --heads 4 --mlp 256 --image-size 28 --patch 4 --eps 1/255,2/255 \
        [--steps 100] [--targets 9] [--queries 5000] [--threads 2]

* ``--weights``: a full model written by ``validate pretrain`` (HF key layout without the ``vit.``
  prefix, ``classifier.*`` head). It is loaded with ``load_state_dict(strict=True)`` into
  ``transformers.ViTForImageClassification`` built from the given sizes (erf GELU, q/k/v biases,
  layer_norm_eps 1e-12, no dropout) with ``from_pretrained`` (which maps the original key layout
  to transformers 5's); a missing, extra or mis-shaped key fails loudly.
* ``--images``: ``validate eval --save-images`` output (``pixels`` in [0, 1], ``labels``).
* The model sees ``(x - 0.5) / 0.5`` (the engine's in-model normalisation for mean = std = 0.5).

Attacks (torchattacks 3.5; ``--attacks``, comma-separated, default all), each configured as the
engine's: APGD-CE and APGD-DLR (``steps``, one restart), APGD-T (``n_classes = targets + 1`` so it
tries ``targets`` classes), FAB-T (multi-targeted FAB, ``steps`` iterations, one restart, the same
``n_classes``), Square (``n_queries``, p_init 0.8, ``resc_schedule=False`` as AutoAttack's
standard version), and the ensemble APGD-CE → APGD-T → FAB-T → Square as ``MultiAttack`` (the
engine's ``autoattack``, AutoAttack's standard members). Note: torchattacks' own
``AutoAttack(version='standard')`` runs APGD and FAB with their default 10 steps and
``n_classes - 1`` targets, not AutoAttack's 100 and 9, so it is not used.

Prints a JSON object after each attack (the last line holds everything): clean accuracy and,
per ε, the robust accuracy of each attack, on the points given (robust = classified correctly
on the returned image and clean-correct).
"""
import argparse
import json
import time
import torch
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True)
    for k in ["dim", "depth", "heads", "mlp", "image-size", "patch"]:
        ap.add_argument(f"--{k}", type=int, required=True)
    ap.add_argument("--eps", default="1/255")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--targets", type=int, default=9)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attacks", default="apgd-ce,apgd-dlr,apgd-t,fab-t,square,autoattack")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import torchattacks
    import transformers
    from transformers import ViTConfig, ViTForImageClassification

    sd = load_file(a.weights)
    classes = sd["classifier.weight"].shape[0]
    cfg = ViTConfig(
        hidden_size=a.dim,
        num_hidden_layers=a.depth,
        num_attention_heads=a.heads,
        intermediate_size=a.mlp,
        image_size=a.image_size,
        patch_size=a.patch,
        num_labels=classes,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    # Saved in HF's original key layout; from_pretrained converts it to transformers 5's names
    # (its conversion mapping), and nothing may be missing or left over.
    import tempfile

    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as d:
        cfg.save_pretrained(d)
        renamed = {(k if k.startswith("classifier.") else "vit." + k): v.contiguous() for k, v in sd.items()}
        save_file(renamed, f"{d}/model.safetensors", metadata={"format": "pt"})
        hf, info = ViTForImageClassification.from_pretrained(d, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not bad, f"the weights do not fit: {bad}"
    hf = hf.float().eval()

    class Model(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(pixel_values=(x - 0.5) / 0.5).logits

    model = Model(hf).eval()
    io = load_file(a.images)
    x, y = io["pixels"].float(), io["labels"].long()
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    out = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torchattacks": torchattacks.__version__,
        "n": len(y),
        "classes": classes,
        "clean": clean.float().mean().item(),
        "robust": [],
    }
    for e in a.eps.split(","):
        num, _, den = e.partition("/")
        eps = float(num) / float(den or 1)
        s = a.seed

        def apgd(loss):
            return torchattacks.APGD(model, norm="Linf", eps=eps, steps=a.steps, n_restarts=1, loss=loss, seed=s)

        def apgdt():
            return torchattacks.APGDT(
                model, norm="Linf", eps=eps, steps=a.steps, n_restarts=1, n_classes=min(a.targets, classes - 1) + 1, seed=s
            )

        def square():
            return torchattacks.Square(
                model, norm="Linf", eps=eps, n_queries=a.queries, n_restarts=1, p_init=0.8, resc_schedule=False, seed=s
            )

        def fabt():
            return torchattacks.FAB(
                model,
                norm="Linf",
                eps=eps,
                steps=a.steps,
                n_restarts=1,
                multi_targeted=True,
                n_classes=min(a.targets, classes - 1) + 1,
                seed=s,
            )

        attacks = {
            "apgd-ce": lambda: apgd("ce"),
            "apgd-dlr": lambda: apgd("dlr"),
            "apgd-t": apgdt,
            "fab-t": fabt,
            "square": square,
            "autoattack": lambda: torchattacks.MultiAttack([apgd("ce"), apgdt(), fabt(), square()]),
        }
        wanted = a.attacks.split(",")
        unknown = [w for w in wanted if w not in attacks]
        assert not unknown, f"unknown attack(s) {unknown}; known: {list(attacks)}"
        row = {"eps": eps}
        for name in wanted:
            make = attacks[name]
            t = time.time()
            adv = make()(x, y)
            assert (adv - x).abs().max().item() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
            with torch.no_grad():
                ok = (model(adv).argmax(1) == y) & clean
            row[name] = {"acc": ok.float().mean().item(), "robust": int(ok.sum()), "seconds": time.time() - t}
            # One cumulative line per attack: a long comparison cut short keeps what it measured.
            print(json.dumps({**out, "robust": out["robust"] + [row]}), flush=True)
        out["robust"].append(row)


if __name__ == "__main__":
    main()
