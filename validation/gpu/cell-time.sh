#!/usr/bin/env bash
# Expected time per cell of validation/configs/paper-vit-b.toml on this machine's GPU (issue 19):
#
#   OUT=/some/folder bash validation/gpu/cell-time.sh
#
# `validate bench --config` needs only the model's shape, so the in21k folder is laid out from
# validation/reference/vit-base-patch16-224-in21k (the hub's config.json and preprocessor config)
# with empty weights (bench times random weights); no dataset is read. Writes
# $OUT/paper-cell-time.txt.
# Environment: BIN (default validation/gpu/bin/validate-cuda), DEVICE (cuda), REPS (3),
# STRATEGY (all). CPU dry run: DEVICE=cpu BIN=target/release/validate STRATEGY=bitfit REPS=1
# BATCH=2 (batch override: the steps are scaled linearly to the config's 128).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder whose files come back}
BIN=${BIN:-validation/gpu/bin/validate-cuda}
DEVICE=${DEVICE:-cuda}
REPS=${REPS:-3}
STRATEGY=${STRATEGY:-all}
mkdir -p "$OUT"
# The binary, the CUDA libraries, gpu.csv and ldd.txt.
source validation/gpu/cuda-env.sh
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/data/vit-base-patch16-224-in21k"
cp validation/reference/vit-base-patch16-224-in21k/*.json "$ROOT/data/vit-base-patch16-224-in21k/"
: > "$ROOT/data/vit-base-patch16-224-in21k/model.safetensors"
cp validation/configs/paper-vit-b.toml "$ROOT/"
BIN=$(realpath "$BIN")
cd "$ROOT"
args=(bench --config paper-vit-b.toml --device "$DEVICE" --reps "$REPS" --strategy "$STRATEGY")
if [ -n "${BATCH:-}" ]; then args+=(--batch-size "$BATCH"); fi
"$BIN" "${args[@]}" | tee "$OUT/paper-cell-time.txt"
