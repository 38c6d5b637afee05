"""PyC's fused CUDA attention (pyc.Attention: cuda_attention_flash at fp32, cuda_attention_mma
at fp16) against the same pattern unfused (batched MatMul, Softmax, MatMul: the score matrix
written and read back) and, where torch with CUDA is installed, against
torch.nn.functional.scaled_dot_product_attention. Run on the GPU machine after
benchmarks/cuda_smoke.sh has set up NVRTC (CUDA_HOME):

    python benchmarks/cuda_attention_bench.py --out $OUT/cuda_attention_bench.json [--variants]

Shapes (the MiniLM/BERT pattern: Q K^T / sqrt(d) + mask [B, 1, 1, T], Softmax, x V; the mask
0 or -10000 with a padded tail): MiniLM-L6 at batch 1, sequence 128 (12 heads of 32);
BERT-base at batch 8, sequence 512 (12 heads of 64); one long sequence, 2048 (8 heads of 64).
The unfused build is the same model with the probabilities also a graph output, which keeps
fuse_attention off (the Softmax then writes them into the output buffer instead of the arena:
the same kernels and traffic). Each build is first checked against numpy float64 (max error
relative to max |Y|: fp32 1e-4, fp16 2e-2, as the tests); times are the kernels alone between
CUDA events (`time_kernels`), the median of --repeat after warm-up; torch's likewise, between
CUDA events around each call, its tensors already on the GPU (fp16 tensors at fp16, float32
ones at fp32, TF32 off).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyc_cli  # noqa: E402
from tests.helpers import Forced  # noqa: E402  (a tuning database naming one kernel)

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
SHAPES = {  # name: (batch, heads, sequence, head width)
    "minilm_b1_s128": (1, 12, 128, 32),
    "bert_base_b8_s512": (8, 12, 512, 64),
    "long_b1_s2048": (1, 8, 2048, 64),
}


def attention_onnx(path: Path, b: int, h: int, s: int, d: int, unfused: bool) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def info(name: str, shape: list[int]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Div", ["qk", "scale"], ["sc"]),
             helper.make_node("Add", ["sc", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    outputs = [info("y", [b, h, s, d])] + ([info("p", [b, h, s, s])] if unfused else [])
    graph = helper.make_graph(nodes, "attention", [info("q", [b, h, s, d]), info("kt", [b, h, d, s]),
                                                   info("v", [b, h, s, d]), info("mask", [b, 1, 1, s])],
                              outputs, [numpy_helper.from_array(np.array(np.sqrt(d), np.float32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def feeds_for(rng: np.random.Generator, b: int, h: int, s: int, d: int) -> dict[str, np.ndarray]:
    mask = np.zeros((b, 1, 1, s), np.float32)
    for row in range(b):  # a padded tail of up to a quarter of the sequence
        mask[row, ..., s - int(rng.integers(0, s // 4 + 1)):] = -10000
    return {"q": rng.standard_normal((b, h, s, d)).astype(np.float32),
            "kt": rng.standard_normal((b, h, d, s)).astype(np.float32),
            "v": rng.standard_normal((b, h, s, d)).astype(np.float32), "mask": mask}


def float64_attention(feeds: dict[str, np.ndarray], d: int) -> np.ndarray:
    q, kt, v = (feeds[n].astype(np.float64) for n in ("q", "kt", "v"))
    scores = q @ kt / np.float64(np.float32(np.sqrt(d))) + feeds["mask"]
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


# the fused kernels' block shapes a tuner may choose (targets/cuda/kernels.py), timed one by one
VARIANTS = {"fp32": ("cuda_attention_flash", "attn_rows", (32, 16, 8, 4)),
            "fp16": ("cuda_attention_mma", "attn_warps", (4, 2, 1))}


def time_pyc(path: Path, work: Path, precision: str, feeds: dict[str, np.ndarray],
             reference: np.ndarray, repeat: int, tuning: Forced | None = None) -> dict[str, object]:
    suffix = "" if tuning is None else "_" + "_".join(f"{k}{v}" for k, v in tuning.params.items())
    built = pyc_cli.build(path, work / f"{path.stem}_{precision}{suffix}.pyc", target="cuda",
                          precision=precision, tuning=tuning)  # type: ignore[arg-type]
    kernels = [n.ann.kernel_name for n in built.graph.nodes if n.ann.kernel is not None]
    with pyc_cli.load(built.artifact) as model:
        out = model.run(feeds)["y"]
        error = float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))
        if not error <= TOLERANCE[precision]:
            raise SystemExit(f"{path.stem} at {precision}: error {error:.3g} > {TOLERANCE[precision]}")
        times = model.time_kernels(feeds, repeat)
    return {"kernels": kernels, "median_ms": statistics.median(times), "min_ms": min(times),
            "max_rel_error": error}


def time_torch(feeds: dict[str, np.ndarray], precision: str, d: int, repeat: int) -> dict[str, object]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = torch.float16 if precision == "fp16" else torch.float32
    q = torch.from_numpy(feeds["q"]).cuda().to(dtype)
    k = torch.from_numpy(feeds["kt"]).cuda().to(dtype).transpose(-1, -2)
    v = torch.from_numpy(feeds["v"]).cuda().to(dtype)
    mask = torch.from_numpy(feeds["mask"]).cuda().to(dtype)
    attention = torch.nn.functional.scaled_dot_product_attention
    for _ in range(5):
        attention(q, k, v, attn_mask=mask)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeat):
        start.record()
        attention(q, k, v, attn_mask=mask)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def torch_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", action="store_true",
                        help="also time the fused kernel in each block shape a tuner may choose "
                             "(attn_rows at fp32, attn_warps at fp16)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with_torch = torch_available()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.shapes:
            b, h, s, d = SHAPES[name]
            feeds = feeds_for(rng, b, h, s, d)
            reference = float64_attention(feeds, d)
            fused = attention_onnx(work / f"{name}.onnx", b, h, s, d, unfused=False)
            unfused = attention_onnx(work / f"{name}_unfused.onnx", b, h, s, d, unfused=True)
            for precision in ("fp32", "fp16"):
                timed = [time_pyc(path, work, precision, feeds, reference, args.repeat)
                         for path in (fused, unfused)]
                row: dict[str, object] = {"shape": name, "batch": b, "heads": h, "seq": s,
                                          "head_dim": d, "precision": precision,
                                          "fused": timed[0], "unfused": timed[1]}
                row["fused_speedup"] = row["unfused"]["median_ms"] / row["fused"]["median_ms"]  # type: ignore[index]
                if args.variants:
                    kernel, tunable, values = VARIANTS[precision]
                    row["fused_variants"] = {
                        f"{tunable}={value}": time_pyc(
                            fused, work, precision, feeds, reference, args.repeat,
                            Forced("pyc.Attention", kernel, {tunable: value}))
                        for value in values}
                if with_torch:
                    row["torch_sdpa"] = time_torch(feeds, precision, d, args.repeat)
                    row["share_of_torch"] = row["torch_sdpa"]["median_ms"] / row["fused"]["median_ms"]  # type: ignore[index]
                print(json.dumps(row))
                results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "torch": with_torch}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
