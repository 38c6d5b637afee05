#!/usr/bin/env bash
# Issue #14's side-by-side table on the GPU machine, in one command (benchmarks/cuda_table.py:
# PyC vs torch eager / torch.compile reduce-overhead / max-autotune on the MiniLM-shaped
# encoder, the MLP and ResNet-50; layernorm / softmax against the copy bandwidth):
#   bash benchmarks/cuda_table.sh [cuda_table.py options, e.g. --budget-s 500]
# Writes $OUT/cuda_table.json (OUT defaults to benchmarks/results) and prints the markdown.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
source benchmarks/cuda_env.sh
$PY benchmarks/cuda_table.py --out "$OUT/cuda_table.json" "$@"
