#!/usr/bin/env bash
# ResNet-50 b1 layer by layer against onnxruntime at THREADS threads (default: every core): the
# build plans its tasks for that team (--threads), `pyc run --profile` at that team beside
# onnxruntime's per-node profile (benchmarks/ort_layers.py). Run from the repository root
# (on the GPU machine after `source benchmarks/cuda_env.sh`); writes $OUT/resnet50-layers-T.txt.
set -euo pipefail
PY=${PY:-python3}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-/tmp}
work=$(mktemp -d)
$PY -c "import sys; sys.path.insert(0, 'benchmarks'); import numpy as np, real_models; from pathlib import Path; real_models._resnet50(Path('$work'), np.random.default_rng(0))"
$PY -m pyc_cli build "$work/resnet50.onnx" -o "$work/r.pyc" --threads "$THREADS" > /dev/null
PYC_NUM_THREADS=$THREADS $PY -m pyc_cli run "$work/r.pyc" --random-inputs 1 --profile --repeat 20 --json > "$work/prof.json"
$PY benchmarks/ort_layers.py "$work/resnet50.onnx" "$work/prof.json" --input-shape gpu_0/data_0=1,3,224,224 \
  --threads "$THREADS" | tee "$OUT/resnet50-layers-$THREADS.txt"
rm -rf "$work"
