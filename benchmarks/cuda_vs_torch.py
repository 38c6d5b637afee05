"""PyC's CUDA target against PyTorch on the same GPU, fp32, one model: the 512-2048-2048-512 MLP
at batch 1 (issue #14's benchmark, first model). Run on the GPU machine after
benchmarks/cuda_smoke.sh has set up NVRTC (it exports CUDA_HOME):

    python benchmarks/cuda_vs_torch.py --out $OUT/cuda_vs_torch.json

PyC builds the ONNX model (`--target cuda`; runs replay one CUDA graph, and
`pyc_without_graphs` launches kernel by kernel, PYC_CUDA_GRAPHS=0), torch runs an nn.Sequential
holding the same weights: eager, and torch.compile(mode="reduce-overhead") (CUDA graphs). Outputs are checked
against each other first; then each engine runs `--repeat` calls after a warm-up, each call
timed on the host around a synchronised call (what a caller waits), p50 reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_models  # noqa: E402
from memprobe import timed  # noqa: E402

import pyc_cli  # noqa: E402


def torch_mlp(path: Path):  # noqa: ANN201 (torch is imported here only)
    """nn.Sequential of Linear(+ReLU) layers holding the ONNX model's weights, on the GPU."""
    import onnx
    import torch

    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    layers: list = []
    for i in range(3):
        weight, bias = inits[f"w{i}"], inits[f"b{i}"]
        linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
        if i < 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).cuda().eval()


def timed_p50(call, repeat: int) -> float:  # noqa: ANN001
    """p50 milliseconds of `call` (which synchronises) after 20 warm-up calls (torch.compile's
    CUDA graphs are recorded over the first few)."""
    for _ in range(19):
        call()
    return statistics.median(timed(call, repeat))  # its own one warm-up call, then `repeat`


def pyc_without_graphs(artifact: Path, x: np.ndarray, repeat: int) -> float:
    """PyC's p50 with its kernels launched one by one (PYC_CUDA_GRAPHS=0) instead of one
    CUDA graph replay per run: what the graph saves."""
    os.environ["PYC_CUDA_GRAPHS"] = "0"
    try:
        with pyc_cli.load(artifact) as model:
            assert model.stats.execution == "cuda_stream"
            return timed_p50(lambda: model.run({"x": x}), repeat)
    finally:
        os.environ.pop("PYC_CUDA_GRAPHS", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as PyC computes it
    with tempfile.TemporaryDirectory() as work:
        path, shapes = real_models.MODELS["mlp"](Path(work), np.random.default_rng(0))
        artifact = pyc_cli.build(path, Path(work) / "mlp.pyc", target="cuda").artifact
        x = np.random.default_rng(1).standard_normal(shapes["x"]).astype(np.float32)
        module = torch_mlp(path)
        xt = torch.from_numpy(x).cuda()
        compiled = torch.compile(module, mode="reduce-overhead")
        with pyc_cli.load(artifact) as model, torch.no_grad():
            got = list(model.run({"x": x}).values())[0]
            eager_out = module(xt).cpu().numpy()
            np.testing.assert_allclose(got, eager_out, rtol=1e-3, atol=1e-4)

            def eager() -> None:
                module(xt)
                torch.cuda.synchronize()

            def graph() -> None:
                compiled(xt)
                torch.cuda.synchronize()

            result = {
                "model": "mlp 512-2048-2048-512 b1 fp32",
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "max_abs_diff_pyc_vs_eager": float(np.max(np.abs(got - eager_out))),
                "p50_ms": {"pyc": timed_p50(lambda: model.run({"x": x}), args.repeat),
                           "pyc_without_graphs": pyc_without_graphs(artifact, x, args.repeat),
                           "torch_eager": timed_p50(eager, args.repeat),
                           "torch_compile_reduce_overhead": timed_p50(graph, args.repeat)},
                "timing": "host perf_counter around one synchronised call, p50 of --repeat after "
                          "20 warm-up calls; PyC through its Python API (host input, host output), "
                          "torch with the input already on the GPU and no copy back",
                "command": "python benchmarks/cuda_vs_torch.py --out $OUT/cuda_vs_torch.json",
            }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
