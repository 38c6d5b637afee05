"""GEMM micro-benchmark: PyC's generated MatMul against onnxruntime's MatMul and numpy (BLAS).

    python benchmarks/gemm_bench.py [--threads 1,2] [--repeat 50] [--rounds 3]
                                    [--shapes all|NAME,...] [--out benchmarks/results/gemm.json]
                                    [--pyc-variants "kc=256;mc=64,kc=512"]

C[M,N] = A[M,K] B[K,N] in float32, B a constant (the weights: PyC packs it at build time,
onnxruntime may pre-pack it too), A an input. Shapes: 1024^3; MiniLM-L6's projections
(128x384x384, 128x384x1536, 128x1536x384); ResNet-50's largest convolutions as GEMMs, the
weights as B (pixels x C*KH*KW times C*KH*KW x channels); batch-1 GEMVs (1x512x2048,
1x2048x2048); the middle layer of a 512-2048-2048-512 MLP at batch 64 (64x2048x2048).

`--pyc-variants` adds PyC builds with fixed GEMM parameters (the tunables of
targets/cpu/gemm.py, e.g. kc: K blocks) as more engines in the same interleaving, so an A/B
against the default plan shares its noise ("pyc[kc=256]" in the results).

Each thread count runs in its own process with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
MKL_NUM_THREADS and PYC_NUM_THREADS set before anything loads, onnxruntime's intra-op threads
set to the same count. Within a process, every round runs every engine on every shape in an
order that rotates per round (the machine is shared and noisy: interleaving spreads the noise
over the engines); p50 is the median of all timed runs (rounds x repeat, after a warm-up), and
each engine's per-round medians are kept too. Outputs are checked against numpy float64 first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (M, K, N)
SHAPES: dict[str, tuple[int, int, int]] = {
    "square_1024": (1024, 1024, 1024),
    "minilm_qkv": (128, 384, 384),
    "minilm_ffn_up": (128, 384, 1536),
    "minilm_ffn_down": (128, 1536, 384),
    # ResNet-50 convs (batch 1) as pixels x (C*KH*KW) times (C*KH*KW) x channels
    "resnet_conv1_7x7": (12544, 147, 64),
    "resnet_l1_3x3": (3136, 576, 64),
    "resnet_l1_1x1_up": (3136, 64, 256),
    "resnet_l2_3x3": (784, 1152, 128),
    "resnet_l3_3x3": (196, 2304, 256),
    "resnet_l4_3x3": (49, 4608, 512),
    "gemv_512x2048": (1, 512, 2048),
    "gemv_2048x2048": (1, 2048, 2048),
    "mlp_b64_2048": (64, 2048, 2048),
}


class _Fixed:
    """A tuning database giving every MatMul the packed GEMM with fixed parameters."""

    def __init__(self, params: dict[str, int]) -> None:
        self.params = params

    def lookup(self, signature: object) -> object:
        from pyc_cli.ir.annotations import KernelChoice

        if getattr(signature, "op", None) != "MatMul":
            return None
        return KernelChoice("matmul_packed_const", dict(self.params))


def _variants(text: str) -> dict[str, dict[str, int]]:
    """"kc=256;mc=64,kc=512" -> {"pyc[kc=256]": {"kc": 256}, "pyc[mc=64,kc=512]": {...}}."""
    out = {}
    for spec in filter(None, (v.strip() for v in text.split(";"))):
        out[f"pyc[{spec}]"] = {k.strip(): int(v) for k, v in
                               (item.split("=") for item in spec.split(","))}
    return out


def _model(path: Path, m: int, k: int, n: int, weights: object) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(weights, "b")])  # type: ignore[arg-type]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)




def child(threads: int, names: list[str], repeat: int, rounds: int,
          variants: dict[str, dict[str, int]] | None = None) -> dict:
    """One process, one thread count: every engine on every shape."""
    import numpy as np
    import onnxruntime as ort
    from memprobe import timed  # numpy loads here, after the thread variables are set

    import pyc_cli

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="gemm_bench_"))
    runners: dict[str, dict[str, object]] = {}
    checks: dict[str, dict[str, float]] = {}
    keep: list = []  # compiled models and bound buffers live for the whole run
    for name in names:
        m, k, n = SHAPES[name]
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        path = work / f"{name}.onnx"
        _model(path, m, k, n, b)
        pyc_cli.build(path, work / f"{name}.pyc", force=True)
        compiled = pyc_cli.load(work / f"{name}.pyc")
        keep.append(compiled)
        extra = {}
        for engine, params in (variants or {}).items():
            out_dir = work / f"{name}.{len(extra)}.pyc"
            pyc_cli.build(path, out_dir, force=True, tuning=_Fixed(params))  # type: ignore[arg-type]
            extra[engine] = pyc_cli.load(out_dir)
            keep.append(extra[engine])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        binding.bind_cpu_input("a", a)
        out = np.empty((m, n), np.float32)
        binding.bind_output("c", "cpu", 0, np.float32, [m, n], out.ctypes.data)
        keep += [a, out]  # the binding holds raw pointers into these
        want = a.astype(np.float64) @ b.astype(np.float64)
        got = {"pyc": compiled.run({"a": a})["c"], "numpy": a @ b,
               **{engine: model.run({"a": a})["c"] for engine, model in extra.items()}}
        session.run_with_iobinding(binding)
        got["onnxruntime"] = out.copy()
        checks[name] = {engine: float(np.max(np.abs(value - want))) for engine, value in got.items()}
        feeds, product = {"a": a}, np.empty((m, n), np.float32)
        runners[name] = {
            "pyc": lambda count, c=compiled, f=feeds: c.time_runs(f, count),
            "onnxruntime": lambda count, s=session, bd=binding:
                timed(lambda: s.run_with_iobinding(bd), count),
            "numpy": lambda count, x=a, y=b, o=product:
                timed(lambda: np.matmul(x, y, out=o), count),
            **{engine: lambda count, c=model, f=feeds: c.time_runs(f, count)
               for engine, model in extra.items()},
        }
    engines = ["pyc", "onnxruntime", "numpy", *(variants or {})]
    samples = {name: {e: [] for e in engines} for name in names}
    round_p50 = {name: {e: [] for e in engines} for name in names}
    for r in range(rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        for name in names:
            for engine in order:
                times = runners[name][engine](repeat)  # type: ignore[operator]
                samples[name][engine] += times
                round_p50[name][engine].append(float(np.median(times)))
    for held in keep:
        if hasattr(held, "close"):
            held.close()
    results = []
    for name in names:
        m, k, n = SHAPES[name]
        flops = 2 * m * n * k
        p50 = {e: float(np.median(v)) for e, v in samples[name].items()}
        results.append({
            "shape": name, "M": m, "K": k, "N": n, "threads": threads,
            "p50_ms": p50, "round_p50_ms": round_p50[name],
            "gflops": {e: flops / (t * 1e-3) * 1e-9 for e, t in p50.items()},
            "pyc_speed_over_ort": p50["onnxruntime"] / p50["pyc"],
            "pyc_speed_over_numpy": p50["numpy"] / p50["pyc"],
            **({"variant_speed_over_pyc": {e: float(np.median(
                np.array(round_p50[name]["pyc"]) / np.array(round_p50[name][e])))
                for e in variants}} if variants else {}),
            "max_abs_error_vs_f64": checks[name],
        })
    return {"threads": threads, "results": results}


def _table(runs: list[dict]) -> str:
    lines = ["| shape | M x K x N | threads | PyC GFLOP/s | onnxruntime | numpy | PyC/ORT speed |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for run in runs:
        for r in run["results"]:
            g = r["gflops"]
            lines.append(f"| {r['shape']} | {r['M']}x{r['K']}x{r['N']} | {r['threads']} | "
                         f"{g['pyc']:.1f} | {g['onnxruntime']:.1f} | {g['numpy']:.1f} | "
                         f"{r['pyc_speed_over_ort']:.2f} |")
    variants = [(r, e, v) for run in runs for r in run["results"]
                for e, v in r.get("variant_speed_over_pyc", {}).items()]
    if variants:
        lines += ["", "| shape | threads | variant | GFLOP/s | speed over pyc (median of rounds) |",
                  "|---|---:|---|---:|---:|"]
        lines += [f"| {r['shape']} | {r['threads']} | {e} | {r['gflops'][e]:.1f} | {v:.3f} |"
                  for r, e, v in variants]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per engine per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="all", help=f"all or some of {','.join(SHAPES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gemm.json")
    parser.add_argument("--pyc-variants", default="",
                        help="PyC builds with fixed GEMM parameters as more engines: "
                             "'kc=256;mc=64,kc=512' (semicolon between builds)")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
    unknown = sorted(set(names) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    if args.child:
        print(json.dumps(child(args.child, names, args.repeat, args.rounds,
                               _variants(args.pyc_variants))))
        return 0
    runs = []
    for threads in [int(t) for t in args.threads.split(",")]:
        env = {**os.environ, **{key: str(threads) for key in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PYC_NUM_THREADS")}}
        done = subprocess.run([sys.executable, __file__, "--child", str(threads), "--shapes",
                               ",".join(names), "--repeat", str(args.repeat), "--rounds",
                               str(args.rounds), "--pyc-variants", args.pyc_variants],
                              env=env, capture_output=True, text=True,
                              check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import numpy as np
    import onnxruntime as ort

    report = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": ort.__version__, "numpy": np.__version__},
        "method": f"p50 of {args.rounds} rounds x {args.repeat} runs after a warm-up, engines "
                  "interleaved per round, one process per thread count",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(_table(runs))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
