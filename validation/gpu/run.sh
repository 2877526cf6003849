#!/usr/bin/env bash
# One slice of the ViT-Base validation on the GPU machine (no Rust, no network there).
#
#   OUT=/some/folder bash validation/gpu/run.sh
#
# Runs `validate run` for at most SLICE_S seconds (default 540: under the 10-minute command limit),
# then packs records + report (never checkpoints) into $OUT/results.tar.gz and the log into $OUT.
# Resuming: the run folder WORK (default validation/gpu/work/run, git-ignored) survives between
# calls on a warm machine; on a fresh one, unpack an earlier results.tar.gz into STATE (default
# validation/gpu/state) and carry it: its finished (dataset, strategy, seed) runs are kept and only
# the rest is redone. The upstream pretraining is deterministic and is redone when missing.
#
# Environment: CONFIG (default validation/configs/gpu-vit-base.toml), BIN (default
# validation/gpu/bin/validate-cuda, built by setup-build.sh; carried as validate-cuda.xz), DEVICE (cuda), SLICE_S (540).
# CPU dry run of the same path: DEVICE=cpu CONFIG=validation/configs/smoke.toml BIN=target/release/validate
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder whose files come back}
CONFIG=${CONFIG:-validation/configs/gpu-vit-base.toml}
BIN=${BIN:-validation/gpu/bin/validate-cuda}
DEVICE=${DEVICE:-cuda}
SLICE_S=${SLICE_S:-540}
WORK=${WORK:-validation/gpu/work/run}
STATE=${STATE:-validation/gpu/state}
mkdir -p "$OUT" "$WORK"

if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
  # Keep what the state has and the work folder lacks (finished runs from an earlier machine).
  cp -an "$STATE"/. "$WORK"/
fi

# The binary, the CUDA libraries, gpu.csv and ldd.txt.
source validation/gpu/cuda-env.sh

start=$(date +%s)
timeout "$SLICE_S" "$BIN" run --config "$CONFIG" --out "$WORK" --device "$DEVICE" --quiet > "$OUT/run.log" 2>&1
rc=$?
echo "exit $rc after $(( $(date +%s) - start )) s" >> "$OUT/run.log"
if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
  tail -20 "$OUT/run.log"
fi
# Records and report only: checkpoints and the upstream backbone stay behind.
tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude=./ckpt --exclude=./upstream . 2>/dev/null
if [ $rc -eq 124 ]; then
  echo "slice of ${SLICE_S} s used up: partial results in $OUT/results.tar.gz; run again to continue"
  exit 0
fi
if [ $rc -eq 0 ]; then
  "$BIN" compare "$WORK" > "$OUT/compare.md" 2>&1 || true
  tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude=./ckpt --exclude=./upstream .
  echo "finished: $OUT/results.tar.gz"
fi
exit $rc
