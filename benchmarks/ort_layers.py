"""PyC against onnxruntime layer by layer: onnxruntime's per-node profile (SessionOptions.
enable_profiling, all graph optimisations, `--threads` intra-op threads) beside a PyC profile
(`pyc run ARTIFACT --profile --json`, run at the same thread count), node by node.

onnxruntime names a fused node after the first node's name or after its output (ResNet-50's
`r2_nchwc`, the Relu output of Conv n0 + BatchNormalization n1 + Relu n2); each of its nodes is
traced back through BatchNormalization / Relu / Add to the Conv (or other node) that starts the
chain, which is the name PyC's profile reports for its fused kernel. Prints per PyC node both
medians (ms) and onnxruntime / PyC (< 1: PyC slower there), then the sums.

    PYC_NUM_THREADS=2 pyc run ART --random-inputs 1 --profile --repeat 20 --json > prof.json
    python benchmarks/ort_layers.py MODEL.onnx prof.json --input-shape x=1,3,224,224 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_single import ort_times  # noqa: E402
from real_models import model_feeds  # noqa: E402

CHAIN_OPS = ("Relu", "BatchNormalization", "Add", "Clip", "HardSigmoid", "Mul", "Sigmoid")
SUFFIXES = ("_nchwc", "_kernel_time")


def ort_node_medians(model: Path, feeds: dict[str, np.ndarray], threads: int, runs: int,
                     warmup: int) -> tuple[dict[str, float], float]:
    """Median milliseconds per onnxruntime node over `runs` profiled runs, and the median run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup - 1):
        session.run(None, feeds)
    times = ort_times(session, feeds, runs)  # its own warm-up call is the last of `warmup`
    events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[event["name"][:-len("_kernel_time")]].append(event["dur"] / 1e3)
    return ({name: statistics.median(v[max(warmup, 1):] or v) for name, v in per_node.items()},
            statistics.median(times))


def chain_start(model: onnx.ModelProto, ort_names: set[str]) -> dict[str, str]:
    """onnxruntime node name -> the ONNX node that starts its fused chain."""
    producer = {out: node for node in model.graph.node for out in node.output}
    names = {node.name for node in model.graph.node}
    mapping = {}
    for name in ort_names:
        base = name
        for suffix in SUFFIXES:
            base = base.removesuffix(suffix)
        if base in names:  # named after its first node
            mapping[name] = base
            continue
        node = producer.get(base)
        while node is not None and node.op_type in CHAIN_OPS:
            inputs = [i for i in node.input if i in producer]
            if not inputs:
                break
            # a residual Add: follow the operand that is not an onnxruntime node's own output
            own = [i for i in inputs if not ({i, i + "_nchwc"} & ort_names)]
            node = producer[(own or inputs)[0]]
        mapping[name] = node.name if node is not None else base
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("profile", type=Path, help="`pyc run --profile --json` output")
    parser.add_argument("--input-shape", action="append", default=[], help="NAME=d0,d1,...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    shapes = {name: tuple(int(d) for d in dims.split(","))
              for name, dims in (s.split("=", 1) for s in args.input_shape)}
    model = onnx.load(str(args.model), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    shapes = {i.name: shapes.get(i.name) or tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
              for i in model.graph.input if i.name not in inits}
    feeds = model_feeds(args.model, shapes, np.random.default_rng(1))
    medians, run_ms = ort_node_medians(args.model, feeds, args.threads, args.runs, args.warmup)
    start = chain_start(model, set(medians))
    ort_ms: dict[str, float] = defaultdict(float)
    for name, ms in medians.items():
        ort_ms[start[name]] += ms
    calls = json.loads(args.profile.read_text())["profile"]["calls"]
    total_pyc = total_ort = 0.0
    print(f"{'node':24} {'PyC kernel':24} {'PyC ms':>8} {'ORT ms':>8} {'ORT/PyC':>8}")
    for call in calls:
        ms, theirs = call["median_ms"], ort_ms.pop(call["node"], None)
        total_pyc += ms
        total_ort += theirs or 0.0
        ratio = f"{theirs / ms:8.2f}" if theirs and ms > 0 else f"{'-':>8}"
        flag = "  <" if theirs and theirs < 0.97 * ms else ""
        ort_text = f"{theirs:8.3f}" if theirs is not None else f"{'-':>8}"
        print(f"{call['node']:24} {call['kernel']:24} {ms:8.3f} {ort_text} {ratio}{flag}")
    left = sum(ort_ms.values())
    print(f"sums: PyC {total_pyc:.2f} ms, onnxruntime {total_ort:.2f} ms matched + {left:.2f} "
          f"unmatched ({', '.join(sorted(ort_ms)) or 'none'}); onnxruntime run p50 "
          f"{run_ms:.2f} ms (profiling on)")


if __name__ == "__main__":
    main()
