"""One 3x3 conv (+ bias + ReLU) with and without Winograd, timed interleaved at one thread.

    PYTHONPATH=$PWD python benchmarks/winograd_layers.py [--cpu native] [--repeat 40]
        [--layer 64,56  --layer 256,14 ...]   # channels,side (ResNet-50's by default)

Builds each layer twice (`winograd=True`, forcing conv2d_winograd; `winograd=False`, the
implicit GEMM the cost model picks then), runs both alternately in one process so the shared
machine's load hits both alike, and prints median and minimum milliseconds and the ratios. The
machine is shared and noisy: quote medians over several invocations, and the minimum beside.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

os.environ.setdefault("PYC_NUM_THREADS", "1")

import pyc_cli  # noqa: E402
from pyc_cli.ir.annotations import KernelChoice  # noqa: E402
from pyc_cli.passes.tuning import KernelSignature  # noqa: E402

RESNET = [(64, 56), (128, 28), (256, 14)]


class Winograd:
    """A tuning database that names conv2d_winograd for every Conv (the cost model aside)."""

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return KernelChoice("conv2d_winograd", {}) if signature.op == "Conv" else None


def conv_model(channels: int, side: int, path: Path, rng: np.random.Generator) -> np.ndarray:
    """A channels -> channels 3x3 conv, pads 1, with bias and ReLU; returns an input."""
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05
    b = rng.standard_normal((channels, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["t"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["t", "b"], ["u"]), helper.make_node("Relu", ["u"], ["y"])]
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return rng.standard_normal(shape).astype(np.float32)


def time_layer(channels: int, side: int, cpu: str, repeat: int, work: Path) -> None:
    rng = np.random.default_rng(0)
    x = conv_model(channels, side, work / "conv.onnx", rng)
    models, names = {}, {}
    for winograd in (True, False):
        out = work / f"w{int(winograd)}"
        result = pyc_cli.build(work / "conv.onnx", out, cpu=cpu, winograd=winograd, force=True,
                               tuning=Winograd() if winograd else None)
        names[winograd] = next(n.ann.kernel.candidate for n in result.graph.nodes if n.op == "Conv")
        models[winograd] = pyc_cli.load(out)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for model in models.values():
            model.run({"x": x})
    for _ in range(repeat):
        for winograd, model in models.items():
            start = time.perf_counter()
            model.run({"x": x})
            times[winograd].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    low = {k: min(v) * 1e3 for k, v in times.items()}
    print(f"{channels}->{channels} {side}x{side}: {names[True]} median {med[True]:.3f} ms (min "
          f"{low[True]:.3f}), {names[False]} median {med[False]:.3f} ms (min {low[False]:.3f}); "
          f"ratio median {med[False] / med[True]:.2f}x, min {low[False] / low[True]:.2f}x")
    for model in models.values():
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", default="native")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--layer", action="append", default=[], metavar="CHANNELS,SIDE")
    args = parser.parse_args()
    layers = [tuple(int(v) for v in text.split(",")) for text in args.layer] or RESNET
    with tempfile.TemporaryDirectory() as tmp:
        for channels, side in layers:
            time_layer(channels, side, args.cpu, args.repeat, Path(tmp))


if __name__ == "__main__":
    main()
