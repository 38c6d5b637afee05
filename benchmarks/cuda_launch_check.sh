#!/usr/bin/env bash
# Programmatic dependent launch (sm_90) checked and timed in one GPU call (an H100 / H200;
# about 5 minutes), from the repository root:
#
#     bash benchmarks/cuda_launch_check.sh
#
# 1. benchmarks/cuda_launch_ab.py: the fp16 encoder at batch 1 and 8, the fp16 MLP and the fp32
#    encoder built once each, loaded with PYC_CUDA_PROGRAMMATIC=0 and =1, outputs checked against
#    onnxruntime and against each other bitwise, then GPU time per run (CUDA events around the
#    kernels' graph) in interleaved rounds; the ratio plain / programmatic;
# 2. the GPU tests of the reference models, the folded-head attention, the C entry point and
#    the plain-vs-programmatic test, with PYC_CUDA_PROGRAMMATIC=1 (every launch after the first
#    a programmatic dependent).
# Logs and JSON under $OUT (cuda_launch_ab.json, launch_ab.log, launch_tests.log). Exit status:
# non-zero if an output was wrong or a test failed. CASES=... overrides the A/B's cases.
set -u
cd "$(dirname "$0")/.."
. benchmarks/cuda_env.sh
OUT=${OUT:-/tmp/pyc_out}
mkdir -p "$OUT"
status=0
echo "== 1. plain vs programmatic launches"
timeout 240 $PY benchmarks/cuda_launch_ab.py --out "$OUT/cuda_launch_ab.json" \
  ${CASES:+--cases "$CASES"} --rounds 7 --repeat 100 2>&1 | tee "$OUT/launch_ab.log" || status=1
echo "== 2. GPU tests with PYC_CUDA_PROGRAMMATIC=1"
PYC_CUDA_PROGRAMMATIC=1 timeout 240 $PY -m pytest -q -p no:cacheprovider -n 8 -rs \
  tests/targets/cuda/test_cuda_gpu.py tests/targets/cuda/test_cuda_c_api.py \
  -k "reference_model or folded_heads or c_entry_point_runs or programmatic or minilm" 2>&1 \
  | tail -25 | tee "$OUT/launch_tests.log"
grep -qE "[0-9]+ passed" "$OUT/launch_tests.log" && ! grep -qE "failed|error" "$OUT/launch_tests.log" \
  || status=1
exit $status
