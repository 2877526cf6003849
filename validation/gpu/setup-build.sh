#!/usr/bin/env bash
# Builds `validate` with candle's CUDA backend on a machine WITHOUT a GPU or a CUDA toolkit, using
# only PyPI (NVIDIA's CUDA 13 wheels), crates.io and Debian's gcc. The binary then travels to the
# GPU machine (which has a driver and CUDA libraries but no Rust toolchain and no network).
#
#   bash validation/gpu/setup-build.sh          # → validation/gpu/bin/validate-cuda
#
# Environment: CUDA_COMPUTE_CAP (90 = H100/H200, sm_90a; 80 = A100 SASS + PTX that newer cards JIT),
# CUDA_TK_PIP (pip cuda-toolkit version, default 13.4.3: match the GPU driver — CUDA 13 needs R580+,
# read `nvidia-smi` there), CUDA_VENV (where the wheels go).
# Follows the verified recipe in the shared folder (gpu/README.md): pinned cuda-toolkit wheels,
# CUDARC_CUDA_VERSION=13040 (cudarc 0.19.10 knows CUDA up to 13.4), unversioned .so symlinks for
# the linker and a generated libcuda.so driver stub (no wheel ships one).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${CUDA_VENV:-$ROOT/validation/gpu/.cuda-venv}
CUDA_TK_PIP=${CUDA_TK_PIP:-13.4.3}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13040}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "cuda-toolkit[nvcc,cudart,cublas,curand,cccl]==${CUDA_TK_PIP}"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CU=$SITE/nvidia/cu13

( cd "$CU/lib"
  for l in cudart cublas cublasLt nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done
  ln -sf libcurand.so.10 libcurand.so )
mkdir -p "$CU/lib/stubs"
if [ ! -f "$CU/lib/stubs/libcuda.so" ]; then
  gcc -E -P -x c "$CU/include/cuda.h" | tr '\n' ' ' \
    | grep -oE 'CUresult[[:space:]]+cu[A-Za-z0-9_]+[[:space:]]*\(' \
    | sed -E 's/^CUresult[[:space:]]+//; s/[[:space:]]*\($//' | sort -u \
    | awk '{print "int " $1 "(void) { return 34; }"}' > "$CU/lib/stubs/libcuda_stub.c"
  gcc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" "$CU/lib/stubs/libcuda_stub.c"
fi
ln -sf libcuda.so "$CU/lib/stubs/libcuda.so.1"

export PATH="$CU/bin:$PATH" CUDA_HOME="$CU" CUDA_PATH="$CU" CUDA_ROOT="$CU"
cargo build --release --features cuda --bin validate --target-dir "$ROOT/target-cuda"
mkdir -p validation/gpu/bin
cp target-cuda/release/validate validation/gpu/bin/validate-cuda
strip validation/gpu/bin/validate-cuda 2>/dev/null || true
# The working tree that travels to the GPU machine is limited to 64 MiB: ship it xz-compressed
# (about 7 MiB; run.sh unpacks it there).
xz -T0 -6 -k -f validation/gpu/bin/validate-cuda
ls -l validation/gpu/bin/validate-cuda validation/gpu/bin/validate-cuda.xz
# Smoke check here, on the CPU: the stub driver makes CUDA unavailable, so --device cpu must work.
LD_LIBRARY_PATH="$CU/lib:$CU/lib/stubs" validation/gpu/bin/validate-cuda inspect --model base --strategy lora
echo "built validation/gpu/bin/validate-cuda for sm_${CUDA_COMPUTE_CAP} (CUDA ${CUDA_TK_PIP})"
