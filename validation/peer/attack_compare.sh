#!/usr/bin/env bash
# The engine's attacks against torchattacks on the same weights and the same images (issue 17).
#
#   PYTHON=/path/to/venv/bin/python bash validation/peer/attack_compare.sh OUT_DIR
#
# Needs a Python with torch, transformers, safetensors and torchattacks (pip install; nothing in
# CI needs it). Steps: a tiny ViT pretrained by `validate pretrain` (300 steps, synthetic-upstream,
# 10 classes) unless OUT_DIR/model.safetensors exists; `validate eval` with each attack on N seeded
# test images (the images written once with --save-images); attack_peer.py with torchattacks on
# those images and weights; OUT_DIR/table.md side by side. Each attack's results are kept per
# side (OUT_DIR/engine-ATTACK.json, OUT_DIR/peer-ATTACK.json) and not re-run when present, so an
# interrupted comparison resumes and a new attack adds its rows. Environment: BIN
# (target/release/validate), N (512), EPS (1/255,2/255), STEPS (100), TARGETS (9), QUERIES (5000),
# ATTACKS ("apgd-ce apgd-dlr apgd-t fab-t square autoattack").
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: attack_compare.sh OUT_DIR}
PY=${PYTHON:-python3}
BIN=${BIN:-target/release/validate}
N=${N:-512}
EPS=${EPS:-1/255,2/255}
STEPS=${STEPS:-100}
TARGETS=${TARGETS:-9}
QUERIES=${QUERIES:-5000}
ATTACKS=${ATTACKS:-apgd-ce apgd-dlr apgd-t fab-t square autoattack}
mkdir -p "$OUT"
[ -f "$OUT/model.safetensors" ] || "$BIN" pretrain --model tiny --steps 300 --out "$OUT/model.safetensors"
save=(--save-images "$OUT/images.safetensors")
[ -f "$OUT/images.safetensors" ] && save=()
for atk in $ATTACKS; do
  case $atk in
    square) budget=(--queries "$QUERIES") ;;
    autoattack) budget=(--steps "$STEPS" --targets "$TARGETS" --queries "$QUERIES") ;;
    apgd-t | fab-t) budget=(--steps "$STEPS" --targets "$TARGETS") ;;
    *) budget=(--steps "$STEPS") ;;
  esac
  if [ ! -s "$OUT/engine-$atk.json" ]; then
    echo "engine: $atk" >&2
    "$BIN" eval --quiet --checkpoint "$OUT/model.safetensors" --data synthetic:synthetic-upstream --n "$N" \
      --eps "$EPS" --attack "$atk" "${budget[@]}" "${save[@]}" --json > "$OUT/engine-$atk.json.tmp"
    mv "$OUT/engine-$atk.json.tmp" "$OUT/engine-$atk.json"
    save=()
  fi
  if [ ! -s "$OUT/peer-$atk.json" ]; then
    echo "torchattacks: $atk" >&2
    "$PY" validation/peer/attack_peer.py --weights "$OUT/model.safetensors" --images "$OUT/images.safetensors" \
      --dim 64 --depth 4 --heads 4 --mlp 256 --image-size 28 --patch 4 --eps "$EPS" --steps "$STEPS" \
      --targets "$TARGETS" --queries "$QUERIES" --attacks "$atk" > "$OUT/peer-$atk.json.tmp"
    mv "$OUT/peer-$atk.json.tmp" "$OUT/peer-$atk.json"
  fi
done
"$PY" - "$OUT" > "$OUT/table.md" <<'PY'
import json, math, sys, pathlib
out = pathlib.Path(sys.argv[1])
order = ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack"]
names = [a for a in order if (out / f"engine-{a}.json").exists() and (out / f"peer-{a}.json").exists()]
eng = {a: json.loads((out / f"engine-{a}.json").read_text()) for a in names}
peers = {a: json.loads((out / f"peer-{a}.json").read_text().strip().splitlines()[-1]) for a in names}
peer = peers[names[0]]
n = peer["n"]
def wilson_half(p, n, z=1.959963984540054):
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
print(f"n = {n} images, {peer['classes']} classes; clean accuracy: engine "
      f"{eng[names[0]]['clean']:.4f}, torchattacks {peer['clean']:.4f}\n")
print("| ε | attack | engine robust | torchattacks robust | difference (points) | Wilson 95% half-width | engine s | torchattacks s |")
print("|---|---|---|---|---|---|---|---|")
for k, row in enumerate(peer["robust"]):
    for a in names:
        if len(peers[a]["robust"]) <= k or a not in peers[a]["robust"][k]:
            continue
        e = eng[a]["robust"][k]
        p = peers[a]["robust"][k][a]
        half = wilson_half(p["acc"], n)
        print(f"| {row['eps']*255:g}/255 | {a} | {e['acc']:.4f} ({e['robust']}) | {p['acc']:.4f} ({p['robust']}) "
              f"| {e['robust'] - p['robust']:+d} | {half:.4f} | {e['seconds']:.1f} | {p['seconds']:.1f} |")
for e in eng["autoattack"]["robust"] if "autoattack" in names else []:
    print(f"\nensemble at {e['eps']*255:g}/255, points broken per member (engine): "
          + ", ".join(f"{m} {c}" for m, c in e["broken"]))
print(f"\ntorch {peer['torch']}, transformers {peer['transformers']}, torchattacks {peer['torchattacks']}")
PY
cat "$OUT/table.md"
