#!/usr/bin/env bash
# The Hopper GEMM (matmul_wgmma.cu.j2, sm_90a) checked and timed in one GPU call (an H100 /
# H200; under 8 minutes), from the repository root:
#
#     bash benchmarks/cuda_wgmma_check.sh
#
# 1. its GPU tests (tests/targets/cuda/test_cuda_wgmma_gpu.py: every shape and variant against
#    float64 and the rounding model, outputs poisoned; its CI tests run in CI, not here);
# 2. an sm_90 fp16 build whose GEMM is the Hopper one: the manifest's architecture record, the
#    registers and spills ptxas reports, and `cuobjdump --dump-sass` counted (HGMMA: the wgmma
#    instructions; HMMA would be mma.sync);
# 3. benchmarks/cuda_gemm_bench.py at fp16, 4096^3, 8192^3 and 1024^3: cuBLAS (torch.matmul),
#    PyC's default, the mma.sync GEMM and each Hopper GEMM variant forced, and the 16-bit
#    activation chains, each checked against float64 first; its markdown table printed last.
# Logs and JSON under $OUT (wgmma_tests.log, wgmma_sass.txt, cuda_gemm_bench.json,
# wgmma_table.md). Exit status: non-zero if a test or a correctness check failed.
set -u
cd "$(dirname "$0")/.."
. benchmarks/cuda_env.sh
OUT=${OUT:-/tmp/pyc_out}
mkdir -p "$OUT"
status=0

echo "== 1. tests"
timeout 200 $PY -m pytest -q -s -p no:cacheprovider --maxfail=5 -rs --durations=5 \
  tests/targets/cuda/test_cuda_wgmma_gpu.py > "$OUT/wgmma_tests.log" 2>&1 || status=1
grep -E "relative error" "$OUT/wgmma_tests.log" | head -40
tail -n 15 "$OUT/wgmma_tests.log"

echo "== 2. SASS and resources of an sm_90 fp16 build (y = x z, 2048 x 1024 x 1024)"
timeout 60 $PY - "$OUT" <<'EOF' || status=1
import json, sys
from pathlib import Path
from onnx import TensorProto, helper
import onnx
import pyc_cli
from pyc_cli.targets.cuda import toolchain

out = Path(sys.argv[1])
m, k, n = 2048, 1024, 1024
graph = helper.make_graph([helper.make_node("MatMul", ["x", "z"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [k, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(out / "g.onnx"))
built = pyc_cli.build(out / "g.onnx", out / "wgmma.pyc", target="cuda", arch="sm_90",
                      precision="fp16", force=True)
manifest = json.loads((out / "wgmma.pyc" / "manifest.json").read_text())
print("kernels:", [nd.ann.kernel.candidate for nd in built.graph.nodes if nd.ann.kernel])
print("cuda record:", {k: manifest["cuda"].get(k) for k in ("arch", "cubin_arch")},
      "flags:", manifest["toolchain"]["flags"])
source = (out / "wgmma.pyc" / "src" / "model.cu").read_text()
for usage in toolchain.resource_usage(source, toolchain.compile_arch("sm_90", source)):
    print("ptxas:", usage)
EOF
CUOBJDUMP=$(command -v cuobjdump || echo "${CUDA_HOME:-/usr/local/cuda}/bin/cuobjdump")
if [ -x "$CUOBJDUMP" ] && [ -f "$OUT/wgmma.pyc/model.cubin" ]; then
  "$CUOBJDUMP" --dump-sass "$OUT/wgmma.pyc/model.cubin" > "$OUT/wgmma_sass.txt" 2>&1
  echo "SASS: HGMMA $(grep -c 'HGMMA' "$OUT/wgmma_sass.txt"), HMMA $(grep -c ' HMMA' "$OUT/wgmma_sass.txt"), LDL/STL $(grep -cE 'LDL|STL' "$OUT/wgmma_sass.txt")"
  grep -E "HGMMA|WARPGROUP" "$OUT/wgmma_sass.txt" | head -8
else
  echo "no cuobjdump found ($CUOBJDUMP)"
fi

echo "== 3. GEMM against cuBLAS"
timeout 220 $PY benchmarks/cuda_gemm_bench.py --sizes 4096 8192 1024 --precisions fp16 --kernels \
  --no-mma-variants --repeat 20 --table --out "$OUT/cuda_gemm_bench.json" > "$OUT/gemm_bench.log" 2>&1 \
  || status=1
sed -n '/^GEMM on/,$p' "$OUT/gemm_bench.log" | tee "$OUT/wgmma_table.md"
grep -q "^GEMM on" "$OUT/gemm_bench.log" || tail -n 30 "$OUT/gemm_bench.log"
echo "status $status"
exit $status
