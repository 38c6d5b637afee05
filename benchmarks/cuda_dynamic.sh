#!/usr/bin/env bash
# Issue #15 on the GPU (issue #14's target): MiniLM-L6 (random weights) built ONCE for
# --target cuda over batch 1..8, seq 1..512, run at several shapes against onnxruntime (on this
# machine's CPU: the reference), and timed beside static CUDA builds at the same shapes (the
# generic plan within 1.3x of a static one). Times: benchmarks/dynamic_minilm.py (engines
# alternating round by round; PyC's are whole runs, host copies included).
#   PRECISION=fp16 bash benchmarks/cuda_dynamic.sh [dynamic_minilm.py options]
# Writes $OUT/cuda_dynamic_minilm_$PRECISION.md (OUT defaults to benchmarks/results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PRECISION=${PRECISION:-fp16}
SHAPES=${SHAPES:-1x16,1x128,8x512,3x77}
mkdir -p "$OUT"
source benchmarks/cuda_env.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
$PY tests/models/make_dynamic_bert.py "$WORK/minilm.onnx" --minilm || exit 1
build() {  # build OUT_DIR INPUT_IDS_SHAPE OTHER_INPUTS_SHAPE
  $PY -m pyc_cli build "$WORK/minilm.onnx" -o "$1" --target cuda --precision "$PRECISION" \
    --input-shape "input_ids=$2" --input-shape "attention_mask=$3" \
    --input-shape "token_type_ids=$3"
}
build "$WORK/symbolic" batch:1..8,seq:1..512 batch,seq || exit 1
statics=()
for shape in ${SHAPES//,/ }; do
  b=${shape%x*} s=${shape#*x}
  build "$WORK/static_$shape" "$b,$s" "$b,$s" || exit 1
  statics+=(--static "$shape=$WORK/static_$shape")
done
{
  echo "# MiniLM-L6 on CUDA at $PRECISION: one symbolic build vs static builds"
  echo
  echo "Device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)."
  echo "Command: \`PRECISION=$PRECISION bash benchmarks/cuda_dynamic.sh $*\`"
  echo
  $PY benchmarks/dynamic_minilm.py "$WORK/minilm.onnx" "$WORK/symbolic" --shapes "$SHAPES" \
    "${statics[@]}" "$@"
} | tee "$OUT/cuda_dynamic_minilm_$PRECISION.md"
