#!/usr/bin/env bash
# The CUDA target's GPU smoke run, in one command on the GPU machine (docs/cuda.md):
#   bash benchmarks/cuda_smoke.sh
# The GPU machine's image already holds what PyC needs (cuda-bindings, cuda-pathfinder,
# nvidia-cuda-nvrtc, onnx, onnxruntime, pytest, jinja2, click, rich: KINDS.md's package list).
# Wheels carried in .whl/ (optional: another cuda-bindings, say) are installed into /tmp/site
# first. NVRTC is the image's wheel, else the CUDA toolkit's libnvrtc (found below). Then it runs
# tests/targets/cuda (NVRTC compilation of every template, the build checks, every kernel and
# the reference models against onnxruntime on the GPU), times the MLP 512-2048-2048-512 and the
# MiniLM-shaped encoder at batch 1, sequence 128 (fp32, and fp16 on tensor cores), and writes
# $OUT/cuda_smoke.json (+ the log). Then, where torch with CUDA is there and CUDA_GEMM_BENCH is
# not 0, PyC's GEMM against torch.matmul (cuBLAS) at 1024^3, 4096^3, 8192^3 in fp16 / tf32 /
# fp32: $OUT/cuda_gemm_bench.json (benchmarks/cuda_gemm_bench.py). Exit status: the smoke's,
# else the GEMM bench's (1 when a result is wrong).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
source benchmarks/cuda_env.sh  # PY, PYTHONPATH, carried wheels, NVRTC (CUDA_HOME)
$PY benchmarks/cuda_smoke.py --out "$OUT"
status=$?
if [ "${CUDA_GEMM_BENCH:-1}" != 0 ] && $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  $PY benchmarks/cuda_gemm_bench.py --out "$OUT/cuda_gemm_bench.json" || { [ $status = 0 ] && status=1; }
else
  echo "GEMM bench skipped (CUDA_GEMM_BENCH=0, or no torch with CUDA)"
fi
exit $status
