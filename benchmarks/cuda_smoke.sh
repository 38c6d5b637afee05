#!/usr/bin/env bash
# The CUDA target's GPU smoke run, in one command on the GPU machine (docs/cuda.md):
#   bash benchmarks/cuda_smoke.sh
# The GPU machine's image already holds what PyC needs (cuda-bindings, cuda-pathfinder,
# nvidia-cuda-nvrtc, onnx, onnxruntime, pytest, jinja2, click, rich: KINDS.md's package list).
# Wheels carried in .whl/ (optional: another cuda-bindings, say) are installed into /tmp/site
# first. NVRTC is the image's wheel, else the CUDA toolkit's libnvrtc (found below). Then it runs
# tests/targets/cuda (NVRTC compilation of every template, the build checks, every kernel and
# the reference models against onnxruntime on the GPU), times the MLP 512-2048-2048-512 and the
# MiniLM-shaped encoder at batch 1, sequence 128, and writes $OUT/cuda_smoke.json (+ the log).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=python3
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# NVRTC from the CUDA toolkit on the machine (cuda-pathfinder looks under CUDA_HOME, then the
# library path)
if [ -z "${CUDA_HOME:-}" ]; then
  for candidate in /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" /usr/local/cuda-*; do
    for lib in "$candidate/lib64" "$candidate/targets/x86_64-linux/lib"; do
      if compgen -G "$lib/libnvrtc.so*" > /dev/null; then
        export CUDA_HOME=$candidate LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        break 2
      fi
    done
  done
fi
echo "CUDA_HOME=${CUDA_HOME:-unset}; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
export PYTHONUNBUFFERED=1
$PY benchmarks/cuda_smoke.py --out "$OUT"
