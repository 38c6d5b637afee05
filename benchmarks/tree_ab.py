"""A/B of two PyC source trees on one conv layer (+ bias, optional residual Add, ReLU): each tree
builds it (PYTHONPATH=TREE, `--threads 1`, the given `--layout`), then both artifacts run
alternately in one process at one thread (rounds of `--repeat` runs), so that the shared
machine's load hits both alike. Prints the kernels chosen, max |A - B| and the median and
minimum milliseconds with the ratios B/A.

    python benchmarks/tree_ab.py TREE_A TREE_B CHANNELS SIDE [--oc N] [--k 3] [--layout nchw]
                                 [--residual] [--rounds 20] [--repeat 20]

TREE_A can be a plain export of a commit (`git archive BASE | tar -x -C /tmp/base`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

os.environ["PYC_NUM_THREADS"] = "1"


def layer(args: argparse.Namespace, rng: np.random.Generator) -> onnx.ModelProto:
    oc = args.oc or args.channels
    shape = [1, args.channels, args.side, args.side]
    w = (rng.standard_normal((oc, args.channels, args.k, args.k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[args.k // 2] * 4,
                              kernel_shape=[args.k] * 2)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    last = "c"
    if args.residual:
        nodes.append(helper.make_node("Add", ["c", "r"], ["s"]))
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, oc, args.side, args.side]))
        last = "s"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    graph = helper.make_graph(nodes, "layer", inputs, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [1, oc, args.side, args.side])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("channels", type=int)
    parser.add_argument("side", type=int)
    parser.add_argument("--oc", type=int, default=0, help="output channels (default: CHANNELS)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--layout", default="nchw")
    parser.add_argument("--residual", action="store_true")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pyc_tree_ab")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / "layer.onnx"
    onnx.save(layer(args, rng), path)
    artifacts = {}
    for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
        artifacts[name] = args.work / f"layer_{name}.pyc"
        subprocess.run([sys.executable, "-m", "pyc_cli", "build", str(path.resolve()), "-o",
                        str(artifacts[name].resolve()), "--threads", "1", "--layout", args.layout,
                        "--no-cache", "--force", "-q"],
                       check=True, env=dict(os.environ, PYTHONPATH=tree), cwd=tree)  # -m: cwd first
    import pyc_cli  # the current tree's loader runs either artifact

    oc = args.oc or args.channels
    feeds = {"x": rng.standard_normal((1, args.channels, args.side, args.side)).astype(np.float32)}
    if args.residual:
        feeds["r"] = rng.standard_normal((1, oc, args.side, args.side)).astype(np.float32)
    models = {name: pyc_cli.load(artifact) for name, artifact in artifacts.items()}
    outputs = {name: model.run(feeds)["y"] for name, model in models.items()}
    kernels = [line.split('kernel="')[1].split('"')[0]
               for line in (artifacts["B"] / "model.ir").read_text().splitlines() if 'kernel="' in line]
    print(f"kernels (B): {kernels}; max |A - B| = {float(np.max(np.abs(outputs['A'] - outputs['B']))):.3g}")
    times: dict[str, list[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
            times[name] += models[name].time_runs(feeds, args.repeat)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(f"median A {med['A']:.4f} B {med['B']:.4f} ms (B/A {med['B'] / med['A']:.3f}); "
          f"min A {low['A']:.4f} B {low['B']:.4f} ms (B/A {low['B'] / low['A']:.3f})")


if __name__ == "__main__":
    main()
