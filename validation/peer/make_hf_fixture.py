#!/usr/bin/env python3
"""Generate the Hugging Face ViT reference fixture used by the Rust engine tests.

What it writes
--------------
For each case below, a folder ``OUT_DIR/<case>/`` holding a complete, tiny
Hugging Face ViT image-classification model folder plus reference tensors:

* ``config.json``, ``model.safetensors`` -- written by
  ``ViTForImageClassification(config).save_pretrained(dir)`` (transformers 5
  always writes safetensors; ``safe_serialization`` is no longer an argument).
* ``preprocessor_config.json`` -- written by ``ViTImageProcessor(...).save_pretrained(dir)``.
* ``io.safetensors`` -- reference inputs/outputs, all ``[B, ...]`` with B = 4:
    - ``pixels``       float32 [B,3,H,W]: the raw test images, uint8 / 255, in [0, 1];
    - ``pixel_values`` float32 [B,3,H,W]: the image processor's output for those
                       images (called on the uint8 HWC arrays, return_tensors="pt");
    - ``logits``       float32 [B,num_labels]: the model (eval mode, float32) on
                       ``pixel_values``;
    - ``logits_f64``   float64 [B,num_labels]: the same with the model in float64
                       on (raw/255 - mean)/std computed in float64.
and ``OUT_DIR/README.md`` describing the cases.

Every model is tiny (image 16, patch 4, hidden 32, 2 layers, 4 heads, MLP 64,
5 labels, layer_norm_eps 1e-6, no dropout) and EVERY parameter is re-drawn
from a fixed-seed distribution after construction (weights ~ N(0, 0.2^2),
biases ~ N(0, 0.1^2), LayerNorm weights ~ 1 + N(0, 0.1^2), LayerNorm biases
~ N(0, 0.1^2), CLS token / position embeddings ~ N(0, 0.5^2)), so that every
tensor matters to the logits.

Cases
-----
* ``erf-half``               gelu (erf), mean = std = 0.5, qkv_bias, original key layout
                             (``vit.encoder.layer.0.attention.attention.query.weight``...).
* ``tanh-imagenet``          gelu_pytorch_tanh, ImageNet mean/std, qkv_bias, original key layout.
* ``gelunew-nobias-newkeys`` gelu_new, mean = std = 0.5, no qkv bias, saved with the
                             transformers-5 in-memory names (``save_original_format=False``:
                             ``vit.layers.0.attention.q_proj.weight``, ``vit.layers.0.mlp.fc1.weight``...).

The raw images are already 16x16 and the processor size is 16x16, so resizing
is the identity; the script checks that ``pixel_values`` equals
``(raw / 255 - mean) / std`` computed by hand (max |diff| < 1e-6) and also that
reloading each folder with ``from_pretrained`` reproduces the saved logits,
and fails loudly otherwise.

How to run
----------
    /path/to/python validation/peer/make_hf_fixture.py [OUT_DIR]

OUT_DIR defaults to ``tests/fixtures/hf`` (relative to the current directory;
run it from the repository root).  Deterministic: fixed torch / numpy seeds,
CPU only.

Requirements: torch, transformers>=5, safetensors, numpy, pillow
(torchvision is optional; without it ``ViTImageProcessor`` falls back to the
PIL/NumPy backend, which is what produced the committed fixture).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

BATCH = 4
IMAGE_SIZE = 16
NUM_LABELS = 5
HALF = [0.5, 0.5, 0.5]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

CASES = [
    # name, hidden_act, mean, std, qkv_bias, save_original_format, seed
    dict(name="erf-half", act="gelu", mean=HALF, std=HALF, qkv_bias=True, original=True, seed=1001),
    dict(
        name="tanh-imagenet",
        act="gelu_pytorch_tanh",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        qkv_bias=True,
        original=True,
        seed=1002,
    ),
    dict(
        name="gelunew-nobias-newkeys",
        act="gelu_new",
        mean=HALF,
        std=HALF,
        qkv_bias=False,
        original=False,
        seed=1003,
    ),
]


def fail(msg: str) -> None:
    print(f"FATAL: {msg}", file=sys.stderr)
    sys.exit(1)


def make_config(case: dict) -> ViTConfig:
    return ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act=case["act"],
        layer_norm_eps=1e-6,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        qkv_bias=case["qkv_bias"],
        num_labels=NUM_LABELS,
        id2label={i: chr(ord("a") + i) for i in range(NUM_LABELS)},
        label2id={chr(ord("a") + i): i for i in range(NUM_LABELS)},
    )


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter from a fixed-seed distribution (see module doc)."""
    gen = torch.Generator().manual_seed(seed)
    layernorms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    seen = 0
    for name, p in model.named_parameters():  # deterministic registration order
        owner, _, leaf = name.rpartition(".")
        noise = lambda std: torch.randn(p.shape, generator=gen, dtype=torch.float32) * std  # noqa: E731
        if leaf in ("cls_token", "position_embeddings"):
            p.copy_(noise(0.5))
        elif owner in layernorms and leaf == "weight":
            p.copy_(1.0 + noise(0.1))
        elif leaf == "bias":
            p.copy_(noise(0.1))
        elif leaf == "weight":
            p.copy_(noise(0.2))
        else:
            fail(f"unexpected parameter {name}; extend randomise()")
        seen += 1
    if seen != len(list(model.parameters())):
        fail("randomise() missed parameters")
    # mask_token / pooler are absent in ViTForImageClassification; make sure
    if any(n.endswith("mask_token") or ".pooler." in n for n, _ in model.named_parameters()):
        fail("unexpected mask_token/pooler parameters")


def make_images(seed: int) -> np.ndarray:
    """B uint8 images, HWC, 16x16x3; full 0..255 range, including both extremes."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    imgs[0, 0, 0, :] = 0
    imgs[0, 0, 1, :] = 255
    return imgs


def saved_keys(path: Path) -> dict[str, tuple[list[int], str]]:
    with safe_open(str(path), framework="pt") as f:
        out = {}
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = (list(t.shape), str(t.dtype).replace("torch.", ""))
        return out


def run_case(case: dict, out_dir: Path) -> dict:
    name = case["name"]
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.iterdir():
        if stale.is_file():
            stale.unlink()

    torch.manual_seed(case["seed"])
    np.random.seed(case["seed"])

    config = make_config(case)
    model = ViTForImageClassification(config)
    randomise(model, case["seed"])
    model.eval()
    attn_impl = model.config._attn_implementation

    # ---- processor ---------------------------------------------------------
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=case["mean"],
        image_std=case["std"],
    )
    images = make_images(case["seed"] + 7)  # uint8 [B,H,W,3]
    pv = processor([im for im in images], return_tensors="pt")["pixel_values"]
    if pv.dtype != torch.float32 or tuple(pv.shape) != (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE):
        fail(f"{name}: processor output {pv.dtype} {tuple(pv.shape)}")

    pixels = torch.from_numpy(images.astype(np.float32) / np.float32(255.0)).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(case["mean"], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(case["std"], dtype=torch.float64).view(1, 3, 1, 1)
    by_hand = (torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0 - mean) / std
    pv_err = (pv.double() - by_hand).abs().max().item()
    if not pv_err < 1e-6:
        fail(f"{name}: pixel_values differ from (raw/255 - mean)/std by {pv_err:.3e} (resize not identity?)")

    # ---- logits ------------------------------------------------------------
    with torch.no_grad():
        logits = model(pixel_values=pv).logits.float().contiguous()
        model64 = ViTForImageClassification(config).eval()
        model64.load_state_dict(model.state_dict())
        model64 = model64.to(torch.float64)
        # The processor's normalisation redone in f64 (raw/255 - mean)/std: an f64 reference
        # throughout, so an engine computing in f64 can be checked to ~1e-12.
        logits64 = model64(pixel_values=by_hand).logits.contiguous()
    if logits64.dtype != torch.float64:
        fail(f"{name}: f64 logits came back as {logits64.dtype}")
    f32_vs_f64 = (logits.double() - logits64).abs().max().item()

    # ---- save --------------------------------------------------------------
    model.save_pretrained(str(d), save_original_format=case["original"])
    processor.save_pretrained(str(d))
    save_file(
        {
            "pixels": pixels,
            "pixel_values": pv.contiguous(),
            "logits": logits,
            "logits_f64": logits64,
        },
        str(d / "io.safetensors"),
        # a single metadata entry: safetensors writes a multi-entry map in random
        # order, which would make the file's bytes differ from run to run
        metadata={
            "generated_by": f"make_hf_fixture.py case={name} transformers={transformers.__version__} "
            f"torch={torch.__version__} attn_implementation={attn_impl}"
        },
    )

    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "io.safetensors"}
    got = {p.name for p in d.iterdir()}
    if got != expected:
        fail(f"{name}: folder holds {sorted(got)}, expected {sorted(expected)}")

    # ---- verify key layout -------------------------------------------------
    keys = saved_keys(d / "model.safetensors")
    old_style = any(".encoder.layer." in k for k in keys)
    new_style = any(k.startswith("vit.layers.") for k in keys)
    layout = "original" if old_style and not new_style else "new" if new_style and not old_style else "mixed"
    want = "original" if case["original"] else "new"
    if layout != want:
        fail(f"{name}: wanted {want} key layout, got {layout}: {sorted(keys)}")
    has_qkv_bias = any(k.endswith(("query.bias", "q_proj.bias")) for k in keys)
    if has_qkv_bias != case["qkv_bias"]:
        fail(f"{name}: qkv bias presence {has_qkv_bias} != {case['qkv_bias']}")
    n_params = sum(p.numel() for p in model.parameters())
    n_saved = sum(int(np.prod(s)) for s, _ in keys.values())
    if n_params != n_saved:
        fail(f"{name}: saved {n_saved} numbers, model has {n_params}")

    # ---- verify the folder reloads to the same logits ------------------------
    with torch.no_grad():
        reloaded = ViTForImageClassification.from_pretrained(str(d)).eval()
        rl = reloaded(pixel_values=pv).logits.float()
    reload_err = (rl - logits).abs().max().item()
    if not reload_err == 0.0:
        fail(f"{name}: reloaded folder gives logits off by {reload_err:.3e}")

    print(f"== {name}: layout={layout} act={case['act']} qkv_bias={case['qkv_bias']} attn={attn_impl}")
    for k, (shape, dt) in sorted(keys.items()):
        print(f"   {k:60s} {shape} {dt}")
    print(f"   pixel_values vs by-hand max|diff| = {pv_err:.3e}")
    print(f"   max|logits - logits_f64|          = {f32_vs_f64:.3e}")
    print(f"   reload max|diff|                  = {reload_err:.3e}")
    print(f"   logits[0] = {logits[0].tolist()}")
    return dict(name=name, layout=layout, f32_vs_f64=f32_vs_f64, pv_err=pv_err, attn=str(attn_impl))


README = """# Hugging Face ViT reference fixture

Produced once by `validation/peer/make_hf_fixture.py` with Hugging Face `transformers`
so that the Rust engine's tests can check that loading an HF ViT model folder gives
HF's own logits (to 1e-5 in f32). Do not edit by hand; regenerate with

    {command}

Generated with transformers {tf}, torch {torch}, numpy {np}, safetensors {st},
Python {py} (CPU; attention implementation `{attn}`; image processor backend: {backend}).

Every model: image 16, patch 4, 3 channels, hidden 32, 2 layers, 4 heads, MLP 64,
5 labels (`a`..`e`), `layer_norm_eps` 1e-6 (not the default), dropout 0; every
parameter re-drawn with a fixed seed (weights N(0, 0.2^2), biases N(0, 0.1^2),
LayerNorm weights 1 + N(0, 0.1^2), CLS token / position embeddings N(0, 0.5^2)).

Each `<case>/` holds `config.json`, `model.safetensors` (from `save_pretrained`),
`preprocessor_config.json` (from `ViTImageProcessor.save_pretrained`) and
`io.safetensors` with B = 4 test images:

| tensor | dtype | shape | meaning |
|---|---|---|---|
| `pixels` | f32 | [4,3,16,16] | raw images, uint8 / 255 |
| `pixel_values` | f32 | [4,3,16,16] | HF image processor output on the uint8 images |
| `logits` | f32 | [4,5] | model (eval, f32) on `pixel_values` |
| `logits_f64` | f64 | [4,5] | model in f64 on (raw/255 − mean)/std computed in f64 |

Images are 16x16 and the processor size is 16x16, so resizing is the identity and
`pixel_values == (pixels - mean) / std` (checked to < 1e-6 by the script).

| case | hidden_act | image mean / std | qkv bias | weight key layout | max abs(logits - logits_f64) |
|---|---|---|---|---|---|
{rows}

Key layouts: *original* = `vit.encoder.layer.N.attention.attention.query.weight`,
`...attention.output.dense`, `...intermediate.dense`, `...output.dense` (what
`save_pretrained` writes by default); *new* = the transformers-5 in-memory names
`vit.layers.N.attention.q_proj.weight`, `...attention.o_proj`, `...mlp.fc1`, `...mlp.fc2`
(`save_pretrained(..., save_original_format=False)`). Both share
`vit.embeddings.*`, `vit.layers.N/encoder.layer.N.layernorm_before/after.*`,
`vit.layernorm.*`, `classifier.*`.
"""


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hf")
    if len(sys.argv) > 2:
        fail("usage: make_hf_fixture.py [OUT_DIR]")
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        fail(f"transformers>=5 required, found {transformers.__version__}")
    torch.set_num_threads(1)  # reproducible reductions
    out_dir.mkdir(parents=True, exist_ok=True)

    results = [run_case(c, out_dir) for c in CASES]

    import PIL
    import safetensors

    backend = getattr(ViTImageProcessor(), "backend", "unknown")
    acts = {c["name"]: c for c in CASES}
    rows = []
    for r in results:
        c = acts[r["name"]]
        ms = "0.5 / 0.5" if c["mean"] == HALF else "ImageNet (0.485,0.456,0.406) / (0.229,0.224,0.225)"
        rows.append(
            f"| `{r['name']}` | `{c['act']}` | {ms} | {'yes' if c['qkv_bias'] else 'no'} "
            f"| {r['layout']} | {r['f32_vs_f64']:.2e} |"
        )
    (out_dir / "README.md").write_text(
        README.format(
            command="/path/to/python validation/peer/make_hf_fixture.py tests/fixtures/hf",
            tf=transformers.__version__,
            torch=torch.__version__,
            np=np.__version__,
            st=safetensors.__version__,
            py=platform.python_version(),
            attn=results[0]["attn"],
            backend=f"`{backend}` (pillow {PIL.__version__})",
            rows="\n".join(rows),
        )
    )
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main()
