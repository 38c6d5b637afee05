#!/usr/bin/env bash
# The Hopper GEMMs (matmul_wgmma.cu.j2, cp.async; matmul_wgmma_tma.cu.j2, TMA + mbarriers +
# persistent, a candidate) checked and timed in one GPU call (an H100 / H200; under 10
# minutes), from the repository root:
#
#     bash benchmarks/cuda_wgmma_check.sh
#
# 1. their GPU tests (tests/targets/cuda/test_cuda_wgmma_gpu.py and test_cuda_wgmma_tma_gpu.py:
#    every shape and variant against float64 and the rounding model, outputs poisoned, run-to-run
#    bitwise equality; their CI tests run in CI, not here);
# 2. an sm_90 fp16 build whose GEMM is the Hopper one, and one with the TMA GEMM forced: the
#    manifest's architecture record, the registers and spills ptxas reports, and `cuobjdump
#    --dump-sass` counted (HGMMA: the wgmma instructions; HMMA would be mma.sync; UTMALDG: TMA
#    loads);
# 3. benchmarks/cuda_gemm_bench.py at fp16, 4096^3 and 8192^3: cuBLAS (torch.matmul), PyC's
#    default, the mma.sync GEMM, each Hopper GEMM variant and each TMA GEMM variant forced, and
#    the 16-bit activation chains, each checked against float64 first; its markdown table last.
# Logs and JSON under $OUT (wgmma_tests.log, tma_tests.log, wgmma_sass.txt, tma_sass.txt,
# cuda_gemm_bench.json, wgmma_table.md). Exit status: non-zero if a test or a correctness check
# failed. SIZES="4096 8192 1024" adds sizes; SKIP_OLD_TESTS=1 skips the cp.async kernel's tests.
set -u
cd "$(dirname "$0")/.."
. benchmarks/cuda_env.sh
OUT=${OUT:-/tmp/pyc_out}
mkdir -p "$OUT"
status=0

echo "== 1a. tests of the TMA GEMM"
tma_flag=""  # a TMA kernel that fails its tests is left out of the timings (a trap would end them)
timeout 180 $PY -m pytest -q -s -p no:cacheprovider --maxfail=5 -rs --durations=5 \
  tests/targets/cuda/test_cuda_wgmma_tma_gpu.py > "$OUT/tma_tests.log" 2>&1 || { status=1; tma_flag=--no-tma; }
grep -E "relative error" "$OUT/tma_tests.log" | head -30
grep -E "elements off|^[.#]{16,}" "$OUT/tma_tests.log" | head -40
tail -n 15 "$OUT/tma_tests.log"

if [ "${SKIP_OLD_TESTS:-0}" != 1 ]; then
  echo "== 1b. tests of the cp.async Hopper GEMM"
  timeout 100 $PY -m pytest -q -s -p no:cacheprovider --maxfail=5 -rs --durations=5 \
    tests/targets/cuda/test_cuda_wgmma_gpu.py > "$OUT/wgmma_tests.log" 2>&1 || status=1
  grep -E "relative error" "$OUT/wgmma_tests.log" | head -10
  tail -n 8 "$OUT/wgmma_tests.log"
fi

echo "== 2. SASS and resources of sm_90 fp16 builds (y = x W, 2048 x 1024 x 1024, W constant)"
timeout 60 $PY - "$OUT" <<'EOF' || status=1
import json, sys
from pathlib import Path
import numpy as np
from onnx import TensorProto, helper, numpy_helper
import onnx
import pyc_cli
from pyc_cli.targets.cuda import toolchain

out = Path(sys.argv[1])
m, k, n = 2048, 1024, 1024
w = np.random.default_rng(0).standard_normal((k, n), dtype=np.float32)
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                          [numpy_helper.from_array(w, "w")])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(out / "g.onnx"))
sys.path[:0] = ["tests/targets/cuda", "tests"]
from test_cuda_wgmma import ForcedWgmma

for name, tuning in (("wgmma", None), ("tma", ForcedWgmma("cuda_matmul_wgmma_tma"))):
    built = pyc_cli.build(out / "g.onnx", out / f"{name}.pyc", target="cuda", arch="sm_90",
                          precision="fp16", force=True, tuning=tuning)
    manifest = json.loads((out / f"{name}.pyc" / "manifest.json").read_text())
    print(name, "kernels:", [nd.ann.kernel.candidate for nd in built.graph.nodes if nd.ann.kernel])
    print("cuda record:", {k: manifest["cuda"].get(k) for k in ("arch", "cubin_arch")},
          "flags:", manifest["toolchain"]["flags"])
    source = (out / f"{name}.pyc" / "src" / "model.cu").read_text()
    for usage in toolchain.resource_usage(source, toolchain.compile_arch("sm_90", source)):
        print("ptxas:", usage)
EOF
CUOBJDUMP=$(command -v cuobjdump || echo "${CUDA_HOME:-/usr/local/cuda}/bin/cuobjdump")
if [ -x "$CUOBJDUMP" ] && [ -f "$OUT/wgmma.pyc/model.cubin" ]; then
  for name in wgmma tma; do
    "$CUOBJDUMP" --dump-sass "$OUT/$name.pyc/model.cubin" > "$OUT/${name}_sass.txt" 2>&1
    echo "$name SASS: HGMMA $(grep -c 'HGMMA' "$OUT/${name}_sass.txt"), HMMA $(grep -c ' HMMA' "$OUT/${name}_sass.txt"), UTMALDG $(grep -c 'UTMALDG' "$OUT/${name}_sass.txt"), USETMAXREG $(grep -c 'USETMAXREG' "$OUT/${name}_sass.txt"), LDL/STL $(grep -cE 'LDL|STL' "$OUT/${name}_sass.txt")"
    grep -E "HGMMA|UTMALDG" "$OUT/${name}_sass.txt" | head -4
  done
else
  echo "no cuobjdump found ($CUOBJDUMP)"
fi

echo "== 3. GEMM against cuBLAS"
timeout 250 $PY benchmarks/cuda_gemm_bench.py --sizes ${SIZES:-4096 8192} --precisions fp16 --kernels \
  --no-mma-variants $tma_flag --repeat 20 --table --out "$OUT/cuda_gemm_bench.json" > "$OUT/gemm_bench.log" 2>&1 \
  || status=1
sed -n '/^GEMM on/,$p' "$OUT/gemm_bench.log" | tee "$OUT/wgmma_table.md"
grep -q "^GEMM on" "$OUT/gemm_bench.log" || tail -n 30 "$OUT/gemm_bench.log"
echo "status $status"
exit $status
