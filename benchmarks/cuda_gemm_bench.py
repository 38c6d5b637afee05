"""PyC's CUDA GEMM against torch.matmul (cuBLAS) on the same GPU: square N^3 GEMMs (default
1024, 4096, 8192) at fp16, tf32 and fp32 (issue #14: fp16 at 4096^3 and above should reach
70% of cuBLAS). Run on the GPU machine after benchmarks/cuda_smoke.sh has set up NVRTC (it
exports CUDA_HOME and runs this too):

    python benchmarks/cuda_gemm_bench.py --out $OUT/cuda_gemm_bench.json [--sizes 1024 4096 8192]

PyC: a one-MatMul ONNX model Y = X W (X an input [N, N], W a constant), built with
`--target cuda --precision P`; at tf32 / fp16 the tensor-core GEMM (matmul_mma.cu.j2) runs, W
stored in fp16 at fp16, X read as float32 and rounded as the tiles are loaded; at fp32 the SIMT
tiled GEMM. torch: torch.matmul of fp16 operands (fp16), of float32 ones with TF32 allowed
(tf32) or not (fp32), into a preallocated output. Both timed as kernels alone: PyC between CUDA
events around its launches (`time_kernels`), torch between CUDA events around each call; the
median of --repeat after warm-up. Each result is first checked against a float64 product on
the GPU (max error relative to max |Y|, within the test suite's per-precision tolerance). At
tf32 / fp16 the tensor-core GEMM is also timed in each variant of VARIANTS (its tunables
`tc_tile` and `tc_min_blocks`, forced through an in-memory tuning database): `pyc_by_variant`,
to check the default choice.

At fp16 the GEMM on 16-bit activations (the arena's, docs/cuda.md: A by cp.async, the
3-stage pipeline, C stored in 16 bits) is timed too, as the difference between chains of 3 and
2 GEMMs X W W W and X W W (the middle GEMM of the longer chain reads and writes 16-bit
activations; the first reads the float32 input, the last writes the float32 output):
`pyc_16bit_activations`, each chain first checked against float64.

On an sm_90 GPU (H100 / H200) the default fp16 build takes the Hopper GEMM (matmul_wgmma.cu.j2)
for large GEMMs. `--kernels` times the tensor-core GEMMs forced, at fp16, in each of their
variants (`pyc_by_kernel`: the mma.sync GEMM as chosen by default, the Hopper one per
tc_wgmma_stages / tc_wgmma_n, the TMA Hopper candidate (matmul_wgmma_tma.cu.j2) per
TMA_VARIANTS) and the 16-bit chains with CHAIN_KERNELS forced (`pyc_16bit_by_kernel`);
`--no-mma-variants` skips the tc_tile sweep; `--table` prints a markdown table last (TFLOP/s
and share of cuBLAS per size and kernel). benchmarks/cuda_wgmma_check.sh runs it so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyc_cli  # noqa: E402

# max |ours - float64| / max |float64| allowed before timing (tests/targets/cuda/mma_precision.py)
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 2e-2}


def gemm_model(work: Path, n: int, w: np.ndarray, depth: int = 1) -> Path:
    """Y = X W (depth 1), or X W W ... (`depth` GEMMs, their intermediates activations)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ["x", *[f"h{d}" for d in range(1, depth)], "y"]
    nodes = [helper.make_node("MatMul", [names[d], "w"], [names[d + 1]]) for d in range(depth)]
    graph = helper.make_graph(nodes, f"gemm{n}x{depth}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                              [numpy_helper.from_array(w, "w")])
    path = work / f"gemm{n}x{depth}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def relative_error(ours, reference) -> float:  # noqa: ANN001 (torch tensors)
    return float((ours.double() - reference).abs().max() / reference.abs().max())


# the tensor-core GEMM's variants timed besides the default: (tc_tile, tc_min_blocks)
VARIANTS = ((64, 1), (128, 1), (128, 2))


# the Hopper GEMM's variants (sm_90, fp16; --kernels): (tc_wgmma_stages, tc_wgmma_n)
WGMMA_VARIANTS = ((4, 128), (3, 128), (4, 256), (3, 256))
# the TMA Hopper GEMM's (matmul_wgmma_tma.cu.j2, a candidate: --kernels times it forced), by
# label: its default (128 x 256 tiles, as many stages as fit) and 128 x 128 tiles
TMA_VARIANTS = {"tma n256": {}, "tma n128": {"tc_wgmma_n": 128}}
# the kernels whose 16-bit chains --kernels times besides the default's
CHAIN_KERNELS = ("mma", "wgmma s4 n256", "tma n256")


class ForcedVariant:
    """A tuning database that gives every MatMul `candidate` (by default the mma.sync
    tensor-core GEMM) with `params`."""

    def __init__(self, candidate: str = "cuda_matmul_mma", **params: int) -> None:
        self.candidate, self.params = candidate, params

    def lookup(self, signature):  # noqa: ANN001, ANN201
        from pyc_cli.ir.annotations import KernelChoice

        return KernelChoice(self.candidate, dict(self.params)) if signature.op == "MatMul" else None


def forced_kernels(tma: bool = True) -> dict[str, ForcedVariant]:
    """--kernels: the mma.sync GEMM (its default tile), each Hopper GEMM variant and each TMA
    Hopper GEMM variant, by label."""
    forced = {"mma": ForcedVariant()}
    for stages, n in WGMMA_VARIANTS:
        forced[f"wgmma s{stages} n{n}"] = ForcedVariant("cuda_matmul_wgmma", tc_wgmma_stages=stages,
                                                        tc_wgmma_n=n)
    for label, params in TMA_VARIANTS.items() if tma else ():
        forced[label] = ForcedVariant("cuda_matmul_wgmma_tma", **params)
    return forced


def time_pyc(path: Path, work: Path, precision: str, x: np.ndarray, repeat: int,
             reference, variant: tuple[int, int] | None = None,  # noqa: ANN001
             tuning: ForcedVariant | None = None) -> dict[str, object]:
    import torch

    started = time.perf_counter()
    if variant is not None:
        tuning = ForcedVariant(tc_tile=variant[0], tc_min_blocks=variant[1])
    label = "" if tuning is None else "_".join([tuning.candidate, *map(str, tuning.params.values())])
    built = pyc_cli.build(path, work / f"{path.stem}_{precision}_{label}.pyc", target="cuda",
                          precision=precision, force=True, tuning=tuning)  # type: ignore[arg-type]
    build_s = time.perf_counter() - started
    kernel = next(n.ann.kernel for n in built.graph.nodes if n.ann.kernel is not None)
    with pyc_cli.load(built.artifact) as model:
        out = model.run({"x": x})["y"]
        error = relative_error(torch.from_numpy(out).cuda(), reference)
        times = model.time_kernels({"x": x}, repeat, warmup=5)
    return {"kernel": kernel.candidate, "params": dict(kernel.params), "build_s": round(build_s, 2),
            "median_ms": statistics.median(times), "min_ms": min(times),
            "rel_error_vs_float64": error}


def time_torch(a, b, repeat: int) -> tuple[float, float, object]:  # noqa: ANN001
    import torch

    out = torch.matmul(a, b)
    for _ in range(5):
        torch.matmul(a, b, out=out)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeat):
        start.record()
        torch.matmul(a, b, out=out)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times), min(times), out


def bench(n: int, precisions: list[str], repeat: int, work: Path, kernels: bool = False,
          mma_variants: bool = True, tma: bool = True) -> list[dict[str, object]]:
    import torch

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, n), dtype=np.float32)
    w = (rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n)).astype(np.float32)
    path = gemm_model(work, n, w)
    xt, wt = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
    reference = torch.matmul(xt.double(), wt.double())
    rows = []
    for precision in precisions:
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        a, b = (xt.half(), wt.half()) if precision == "fp16" else (xt, wt)
        torch_ms, torch_min, out = time_torch(a, b, repeat)
        ours = time_pyc(path, work, precision, x, repeat, reference)
        by_variant = {}
        if precision != "fp32" and mma_variants:
            for variant in VARIANTS:
                forced = time_pyc(path, work, precision, x, repeat, reference, variant)
                by_variant[f"tc_tile={variant[0]},tc_min_blocks={variant[1]}"] = {
                    "median_ms": forced["median_ms"],
                    "rel_error_vs_float64": forced["rel_error_vs_float64"]}
        flop = 2.0 * n ** 3
        row = {"n": n, "precision": precision, "pyc": ours,
               "torch": {"median_ms": torch_ms, "min_ms": torch_min,
                         "rel_error_vs_float64": relative_error(out, reference)},
               "pyc_tflops": flop / ours["median_ms"] / 1e9,  # type: ignore[operator]
               "torch_tflops": flop / torch_ms / 1e9,
               "pyc_share_of_cublas": torch_ms / ours["median_ms"],  # type: ignore[operator]
               "pyc_by_variant": by_variant,
               "correct": all(float(r["rel_error_vs_float64"]) <= TOLERANCE[precision]  # type: ignore[arg-type]
                              for r in (ours, *by_variant.values()))}
        if precision == "fp16" and kernels:
            by_kernel = {label: time_pyc(path, work, precision, x, repeat, reference, tuning=forced)
                         for label, forced in forced_kernels(tma).items()}
            for timed in by_kernel.values():
                timed["tflops"] = flop / float(timed["median_ms"]) / 1e9  # type: ignore[arg-type]
                timed["share_of_cublas"] = torch_ms / float(timed["median_ms"])  # type: ignore[arg-type]
            row["pyc_by_kernel"] = by_kernel
            row["correct"] = row["correct"] and all(
                float(r["rel_error_vs_float64"]) <= TOLERANCE[precision] for r in by_kernel.values())  # type: ignore[arg-type]
        if precision == "fp16":
            row["pyc_16bit_activations"] = chain_difference(work, n, x, w, xt, wt, repeat, torch_ms)
            row["correct"] = row["correct"] and row["pyc_16bit_activations"]["correct"]  # type: ignore[index]
            if kernels:  # the 16-bit chains with each tensor-core GEMM forced
                by_kernel = {label: chain_difference(work, n, x, w, xt, wt, repeat, torch_ms, forced)
                             for label, forced in forced_kernels(tma).items()
                             if label in CHAIN_KERNELS}
                row["pyc_16bit_by_kernel"] = by_kernel
                row["correct"] = row["correct"] and all(c["correct"] for c in by_kernel.values())
        print(json.dumps(row), flush=True)
        rows.append(row)
    (work / f"gemm{n}x1.onnx").unlink()
    return rows


def chain_difference(work: Path, n: int, x: np.ndarray, w: np.ndarray, xt, wt,  # noqa: ANN001
                     repeat: int, torch_ms: float,
                     tuning: ForcedVariant | None = None) -> dict[str, object]:
    """The fp16 GEMM on 16-bit activations: chains of 3 and 2 GEMMs timed, the difference."""
    chains = {}
    for depth in (3, 2):
        reference = xt.double()
        for _ in range(depth):
            reference = torch_matmul(reference, wt.double())
        chains[depth] = time_pyc(gemm_model(work, n, w, depth), work, "fp16", x, repeat, reference,
                                 tuning=tuning)
    ms = float(chains[3]["median_ms"]) - float(chains[2]["median_ms"])  # type: ignore[arg-type]
    return {"median_ms": ms, "tflops": 2.0 * n ** 3 / ms / 1e9 if ms > 0 else None,
            "share_of_cublas": torch_ms / ms if ms > 0 else None,
            "chain3": chains[3], "chain2": chains[2],
            "correct": all(float(c["rel_error_vs_float64"]) <= TOLERANCE["fp16"]  # type: ignore[arg-type]
                           for c in chains.values())}


def torch_matmul(a, b):  # noqa: ANN001, ANN201
    import torch

    return torch.matmul(a, b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--precisions", nargs="+", default=["fp16", "tf32", "fp32"],
                        choices=sorted(TOLERANCE))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kernels", action="store_true",
                        help="at fp16, time the mma.sync and each Hopper GEMM variant forced")
    parser.add_argument("--no-mma-variants", action="store_true",
                        help="skip the mma.sync GEMM's tc_tile / tc_min_blocks sweep")
    parser.add_argument("--table", action="store_true", help="print a markdown table last")
    parser.add_argument("--no-tma", action="store_true",
                        help="leave the TMA Hopper GEMM out of --kernels (its tests failed)")
    args = parser.parse_args()
    import torch

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as work:
        for n in args.sizes:
            rows += bench(n, args.precisions, args.repeat, Path(work), args.kernels,
                          not args.no_mma_variants, not args.no_tma)
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "pyc_version": pyc_cli.__version__, "results": rows,
        "all_correct": all(bool(r["correct"]) for r in rows),
        "timing": "kernels alone between CUDA events, median of --repeat after warm-up; PyC's "
                  "X is float32 at every precision (a model input, rounded in the kernel), "
                  "torch's fp16 operands are fp16 already; pyc_16bit_activations: the fp16 "
                  "GEMM on 16-bit operands, chains of 3 minus 2 GEMMs",
        "command": "python benchmarks/cuda_gemm_bench.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=1))
    if args.table:
        print(table(rows, str(result["device"])))
    return 0 if result["all_correct"] else 1


def table(rows: list[dict[str, Any]], device: str) -> str:
    """Markdown: per size and precision, cuBLAS and each PyC GEMM timed, TFLOP/s and share."""
    lines = [f"GEMM on {device} (kernels alone, median; X float32 rounded in the kernel, "
             "'16-bit' rows: chains of 3 minus 2 GEMMs on 16-bit activations)", "",
             "| N^3 | prec | kernel | ms | TFLOP/s | share of cuBLAS | rel err |",
             "|---|---|---|---|---|---|---|"]

    def line(n: int, precision: str, label: str, ms: float | None, share: float | None,
             error: float | None) -> None:
        tflops = f"{2.0 * n ** 3 / ms / 1e9:.0f}" if ms and ms > 0 else "-"
        lines.append(f"| {n} | {precision} | {label} | {ms:.3f} | {tflops} | "
                     f"{share:.0%} | {error:.1e} |" if ms and share and error is not None
                     else f"| {n} | {precision} | {label} | {ms} | {tflops} | - | - |")
    for row in rows:
        n, precision, torch_row = row["n"], row["precision"], row["torch"]
        line(n, precision, "cuBLAS (torch.matmul)", torch_row["median_ms"], 1.0,
             torch_row["rel_error_vs_float64"])
        ours = row["pyc"]
        line(n, precision, f"pyc default ({ours['kernel'].removeprefix('cuda_')})",
             ours["median_ms"], row["pyc_share_of_cublas"], ours["rel_error_vs_float64"])
        for label, timed in row.get("pyc_by_kernel", {}).items():
            line(n, precision, label, timed["median_ms"], timed["share_of_cublas"],
                 timed["rel_error_vs_float64"])
        chains = {"default": row.get("pyc_16bit_activations"), **row.get("pyc_16bit_by_kernel", {})}
        for label, chain in chains.items():
            if chain:
                line(n, precision, f"16-bit {label}", chain["median_ms"], chain["share_of_cublas"],
                     max(float(c["rel_error_vs_float64"]) for c in (chain["chain3"], chain["chain2"])))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
