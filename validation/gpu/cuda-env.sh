# Sourced by run.sh and cell-time.sh on the GPU machine (no Rust, no network there): unpacks the
# carried binary and, for a CUDA device, points the loader at the machine's CUDA 13 libraries and
# records what it found in $OUT (gpu.csv: name, driver, memory; ldd.txt: which library each
# dependency resolved to, "not found" naming any that did not).
#
# Expects BIN, DEVICE and OUT to be set. The libraries come from the machine's Python wheels
# (nvidia/*/lib, nvidia/cu13/lib: PyTorch's) or its toolkit (/usr/local/cuda/lib64).
if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then
  xz -dkf "$BIN.xz" && chmod +x "$BIN"
fi
if [ ! -x "$BIN" ]; then
  echo "error: no binary at $BIN (build it with validation/gpu/setup-build.sh and carry $BIN.xz)" >&2
  exit 2
fi
if [ "$DEVICE" != cpu ]; then
  LIBS=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
paths = []
for s in site.getsitepackages() + [site.getusersitepackages()]:
    paths += glob.glob(os.path.join(s, "nvidia", "*", "lib")) + glob.glob(os.path.join(s, "nvidia", "cu*", "lib"))
print(":".join(sorted(set(paths))))
PY
)
  export LD_LIBRARY_PATH="${LIBS}:${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv" 2>&1 || true
  ldd "$BIN" > "$OUT/ldd.txt" 2>&1 || true
  if grep -q "not found" "$OUT/ldd.txt"; then
    echo "warning: libraries not found for $BIN:" >&2
    grep "not found" "$OUT/ldd.txt" >&2
  fi
fi
