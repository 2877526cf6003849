#!/usr/bin/env bash
# Builds `validate` with candle's CUDA backend on a machine WITHOUT a GPU or a CUDA toolkit, using
# only PyPI (NVIDIA's CUDA 13 wheels), crates.io and Debian's gcc. The binary then travels to the
# GPU machine (which has a driver and CUDA libraries but no Rust toolchain and no network).
#
#   bash validation/gpu/setup-build.sh          # → validation/gpu/bin/validate-cuda
#
# Environment: CUDA_COMPUTE_CAP (90 = H100/H200, sm_90a; 80 = A100 SASS + PTX that newer cards JIT),
# CUDA_TK_PIP (pip cuda-toolkit version, default 13.0.3.0), CUDA_VENV (where the wheels go).
#
# The toolkit must not be newer than the GPU machine's driver: candle's kernels travel as PTX that
# the driver compiles when the binary starts, and a driver refuses PTX of a newer ISA than its own
# CUDA version. Measured 2026-12-03: the 13.0.3.0 wheels' nvcc writes PTX ISA 9.0, the 13.4.3
# wheels' nvcc 9.5, and a CUDA 13.0 driver takes PTX up to 9.0. The H200 machines lent here run
# driver 580.159 (CUDA 13.0) with PyTorch's CUDA 13.0 libraries (the device library's KINDS.md),
# hence 13.0.x; for another machine read "CUDA Version" in its `nvidia-smi` and pick that
# cuda-toolkit==13.N.*.
# The script prints the PTX ISA it embedded.
# Follows the verified recipe in the shared folder (gpu/README.md): pinned cuda-toolkit wheels,
# CUDARC_CUDA_VERSION matching them (cudarc 0.19.10 knows CUDA up to 13.4), unversioned .so
# symlinks for the linker and a generated libcuda.so driver stub (no wheel ships one).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CUDA_TK_PIP=${CUDA_TK_PIP:-13.0.3.0}
VENV=${CUDA_VENV:-$ROOT/validation/gpu/.cuda-venv-$CUDA_TK_PIP}
# 13.0.3.0 -> 13000, 13.4.3 -> 13040 (cudarc's encoding of major.minor).
TK_MAJOR=${CUDA_TK_PIP%%.*}
TK_MINOR=${CUDA_TK_PIP#*.}; TK_MINOR=${TK_MINOR%%.*}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-$(( TK_MAJOR * 1000 + TK_MINOR * 10 ))}
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
# One build folder per toolkit: candle-kernels reruns its build script only when its sources change,
# so a folder built with another nvcc would keep that nvcc's PTX.
TARGET=$ROOT/target-cuda-$CUDA_TK_PIP
cargo build --release --features cuda --bin validate --target-dir "$TARGET"
mkdir -p validation/gpu/bin
cp "$TARGET/release/validate" validation/gpu/bin/validate-cuda
strip validation/gpu/bin/validate-cuda 2>/dev/null || true
# The working tree that travels to the GPU machine is limited to 64 MiB: ship it xz-compressed
# (about 8 MiB; cuda-env.sh unpacks it there).
xz -T0 -6 -k -f validation/gpu/bin/validate-cuda
ls -l validation/gpu/bin/validate-cuda validation/gpu/bin/validate-cuda.xz
# Smoke check here, on the CPU: the stub driver makes CUDA unavailable, so --device cpu must work.
LD_LIBRARY_PATH="$CU/lib:$CU/lib/stubs" validation/gpu/bin/validate-cuda inspect --model base --strategy lora
PTX=$(grep -a -o -E '^\.version [0-9]+\.[0-9]+' validation/gpu/bin/validate-cuda | sort -u | tr '\n' ' ')
echo "built validation/gpu/bin/validate-cuda for sm_${CUDA_COMPUTE_CAP} (CUDA ${CUDA_TK_PIP}); embedded PTX ISA: ${PTX:-none found}"
echo "the GPU machine's driver must support CUDA ${TK_MAJOR}.${TK_MINOR} or later (nvidia-smi: CUDA Version)"
