"""LayerNormalization and Softmax: PyC against onnxruntime on the same one-op models.

    python benchmarks/layernorm_bench.py [--repeat 60] [--rounds 3] [--threads 1,2]
                                         [--out benchmarks/results/layernorm.json]

Shapes: MiniLM's (1x128x384, 8x128x384; Softmax over its 1x12x128x128 and 8x12x128x128
attention scores) and a large one (4096x1024). Each model chains `depth` copies of the op, so
that the per-call overhead of either engine (tens of microseconds from Python) does not hide
the kernel; times are per op. Both engines get the same thread count: onnxruntime through
intra_op_num_threads, PyC's library rebuilt from the artifact's sources with OpenMP standing in
for the runtime's PYC_PARALLEL_FOR (one thread: the artifact's own library); idle threads of
both wait without spinning. Outputs are checked against onnxruntime first. Rounds interleave
the engines; p50 over all timed runs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# neither engine's idle threads spin while the other one runs (interleaved in one process on a
# shared machine, spinning workers of one starve the other): OpenMP's wait passively, and so do
# onnxruntime's (allow_spinning 0 below)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyc_cli import api  # noqa: E402
from pyc_cli.targets.cpu.target import CpuTarget  # noqa: E402

# (op, label, shape, ops chained in one model)
CASES = [
    ("LayerNormalization", "minilm b1", (1, 128, 384), 8),
    ("LayerNormalization", "minilm b8", (8, 128, 384), 4),
    ("LayerNormalization", "large", (4096, 1024), 2),
    ("Softmax", "minilm b1 scores", (1, 12, 128, 128), 8),
    ("Softmax", "minilm b8 scores", (8, 12, 128, 128), 4),
    ("Softmax", "large", (4096, 1024), 2),
]
NAME = "bench"


def chain_model(op: str, shape: tuple[int, ...], depth: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    row = shape[-1]
    inits, nodes, x = [], [], "x"
    for d in range(depth):
        y = f"y{d}"
        if op == "LayerNormalization":
            inits += [numpy_helper.from_array(rng.uniform(0.5, 1.5, row).astype(np.float32), f"s{d}"),
                      numpy_helper.from_array(rng.standard_normal(row).astype(np.float32), f"b{d}")]
            nodes.append(helper.make_node(op, [x, f"s{d}", f"b{d}"], [y], axis=-1, epsilon=1e-12))
        else:
            nodes.append(helper.make_node(op, [x], [y], axis=-1))
        x = y
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


class PycLibrary:
    """The artifact's library (or its OpenMP rebuild) called through the C ABI, outputs
    preallocated: what a C caller pays."""

    def __init__(self, library: Path, weights: Path, out_shape: tuple[int, ...]) -> None:
        self.lib = ctypes.CDLL(str(library))
        handle = ctypes.c_void_p()
        status = self.lib[f"{NAME}_create"](str(weights).encode(), ctypes.byref(handle))
        assert status == 0, status
        self.handle = handle
        self.run_fn = self.lib[f"{NAME}_run"]
        self.out = np.empty(out_shape, np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        ins = (ctypes.c_void_p * 1)(x.ctypes.data)
        outs = (ctypes.c_void_p * 1)(self.out.ctypes.data)
        status = self.run_fn(self.handle, ins, outs)
        assert status == 0, status
        return self.out


def openmp_library(artifact: Path, threads: int, work: Path) -> Path:
    """The artifact's sources compiled with PYC_PARALLEL_FOR as an OpenMP loop."""
    target = CpuTarget()
    library = artifact / f"lib{NAME}_omp{threads}.so"  # a path of its own: dlopen reuses a path
    pragma = f'_Pragma("omp parallel for schedule(static) num_threads({threads})")'
    target.compile_library(artifact / "src", library,
                           flags=[*target.flags(), "-fopenmp", f"-DPYC_PARALLEL_FOR={pragma}"],
                           libraries=[*target.libraries(), "-fopenmp"])
    return library


def timed(fn, x: np.ndarray, repeat: int) -> list[float]:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def measure(op: str, label: str, shape: tuple[int, ...], depth: int, threads: list[int],
            args: argparse.Namespace, work: Path) -> list[dict]:
    path = work / f"{op}_{'x'.join(map(str, shape))}.onnx"
    chain_model(op, shape, depth, path)
    artifact = work / (path.stem + ".pyc")
    start = time.perf_counter()
    api.build(path, artifact, force=True, name=NAME)
    build_s = time.perf_counter() - start
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) * 3 + 0.5
    results = []
    for n in threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = n
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        library = artifact / "libmodel.so" if n == 1 else openmp_library(artifact, n, work)
        pyc = PycLibrary(library, artifact / "weights.bin", shape)
        engines = {"pyc": pyc.run, "onnxruntime": lambda v, s=session: s.run(None, {"x": v})[0]}
        expected = engines["onnxruntime"](x)
        diff = float(np.max(np.abs(engines["pyc"](x) - expected)))
        assert diff < 1e-4, (op, shape, diff)
        samples: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, fn in engines.items():
                timed(fn, x, max(3, args.repeat // 10))  # warm-up
                samples[name] += timed(fn, x, args.repeat)
        p50 = {name: statistics.median(t) / depth * 1e6 for name, t in samples.items()}
        row = {"op": op, "case": label, "shape": list(shape), "threads": n, "ops_per_model": depth,
               "runs": args.rounds * args.repeat, "max_abs_diff": diff,
               "p50_us_per_op": p50, "ort_over_pyc": p50["onnxruntime"] / p50["pyc"],
               "build_s": round(build_s, 2)}
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--ops", default="LayerNormalization,Softmax")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "layernorm.json")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    results = []
    load_before = os.getloadavg()  # the machine is shared: how busy it was, with the numbers
    with tempfile.TemporaryDirectory() as tmp:
        for op, label, shape, depth in CASES:
            if op in args.ops.split(","):
                results += measure(op, label, shape, depth, threads, args, Path(tmp))
    record = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "onnxruntime": ort.__version__, "note": "p50 microseconds per op; ort_over_pyc > 1: "
              "PyC faster", "loadavg_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
