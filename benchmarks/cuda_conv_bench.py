"""PyC's tensor-core conv (cuda_conv_mma) against cuDNN (torch.nn.functional.conv2d) on
ResNet-50's conv shapes at batch 1 and 32, fp16. Run on the GPU machine after
benchmarks/cuda_smoke.sh has set up NVRTC (benchmarks/cuda_env.sh):

    python benchmarks/cuda_conv_bench.py --out $OUT/cuda_conv_bench.json [--batches 1 32] [--sweep]
        [--stages 2 3 4] [--inputs float32 fp16]

PyC: a one-Conv ONNX model (bias and ReLU fused, x an input [N, C, H, W], w a constant) built
with `--target cuda --precision fp16`: the weight stored in fp16, x read as float32 and rounded
as the im2col slices are gathered; the default tile and splits, and with --sweep every
(conv_tile, conv_split, conv_ksplit) of VARIANTS, forced through an in-memory tuning database
(`pyc_by_variant`: to check and retune the defaults, kernel_context._conv_mma_tile / _split /
_ksplit; a K split the workspace cap cannot hold is halved: `grid` tells what ran).
`pyc_by_stages`: the pipeline depth conv_stages (2: the im2col slice gathered through
registers; 3 / 4: by cp.async, kernel_context.CONV_MMA_STAGES the default) forced for each of
--stages, on the float32 input x (`float32`: rounded as gathered) and on a 16-bit one (`fp16`:
the model Relu(x) -> Conv, so the conv reads an activation stored in fp16, as ResNet-50's
convs after the stem do; there the Conv launch alone is timed, events around each launch of
one captured graph, benchmarks/cuda_kernel_times.py); pointwise stride-1 convs keep 2
whatever is asked (their gather is a row of 4 columns; `stages` tells what ran). torch:
conv2d + relu of fp16 NCHW tensors and of channels-last ones (what torch.compile picks for
convs), cudnn.benchmark on. Both timed as kernels alone, CUDA events, median of --repeat after
warm-up. Each result is first checked against a float32 conv on the GPU (max error within 2e-2
of max |y|, the fp16 tolerance of the tests). `resnet50_sum_ms`: each engine's times weighted by
how often ResNet-50 runs the shape (its whole conv time; the model's other ops excluded).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import pyc_cli  # noqa: E402

TOLERANCE = 2e-2
# (conv_tile, conv_split, conv_ksplit)
VARIANTS = ((128, 1, 1), (64, 1, 1), (32, 1, 1), (64, 2, 1), (32, 2, 1), (32, 4, 1),
            (64, 1, 4), (32, 1, 4), (32, 2, 4), (32, 1, 8), (32, 2, 8))
# ResNet-50 (v1.5, stride on the 3 x 3) convs: (input size, C, OC, kernel, stride, times used)
RESNET50_CONVS = (
    (224, 3, 64, 7, 2, 1),
    (56, 64, 64, 1, 1, 1), (56, 256, 64, 1, 1, 2), (56, 64, 64, 3, 1, 3), (56, 64, 256, 1, 1, 4),
    (56, 256, 128, 1, 1, 1), (28, 512, 128, 1, 1, 3), (56, 128, 128, 3, 2, 1),
    (28, 128, 128, 3, 1, 3), (28, 128, 512, 1, 1, 4), (56, 256, 512, 1, 2, 1),
    (28, 512, 256, 1, 1, 1), (14, 1024, 256, 1, 1, 5), (28, 256, 256, 3, 2, 1),
    (14, 256, 256, 3, 1, 5), (14, 256, 1024, 1, 1, 6), (28, 512, 1024, 1, 2, 1),
    (14, 1024, 512, 1, 1, 1), (7, 2048, 512, 1, 1, 2), (14, 512, 512, 3, 2, 1),
    (7, 512, 512, 3, 1, 2), (7, 512, 2048, 1, 1, 3), (14, 1024, 2048, 1, 2, 1),
)


INPUTS = ("float32", "fp16")


class ForcedVariant:
    """A tuning database giving every Conv the tensor-core conv with `params` (the others keep
    their defaults)."""

    def __init__(self, **params: int) -> None:
        self.params = params

    def lookup(self, signature):  # noqa: ANN001, ANN201
        from pyc_cli.ir.annotations import KernelChoice

        return KernelChoice("cuda_conv_mma", dict(self.params)) if signature.op == "Conv" else None


def conv_model(work: Path, batch: int, size: int, c: int, oc: int, k: int, stride: int,
               rng: np.random.Generator, half_input: bool = False,
               suffix: str = "") -> tuple[Path, np.ndarray, np.ndarray]:
    """y = Relu(Conv(x, w, b)); half_input: the conv reads Relu(x) (stored in fp16)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    pad = k // 2
    out = (size + 2 * pad - k) // stride + 1
    w = (rng.standard_normal((oc, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["xr"])] if half_input else []
    nodes += [helper.make_node("Conv", ["xr" if half_input else "x", "w", "b"], ["c"], strides=[stride] * 2,
                               pads=[pad] * 4),
              helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, oc, out, out])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = work / f"conv_b{batch}_{size}_{c}_{oc}_{k}_{stride}{suffix}{'_h' if half_input else ''}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, w, b


def relative_error(ours, reference) -> float:  # noqa: ANN001 (torch tensors)
    return float((ours.float() - reference).abs().max() / reference.abs().max())


def time_pyc(path: Path, work: Path, x: np.ndarray, repeat: int, reference,  # noqa: ANN001
             variant: tuple[int, int, int] | None = None, stages: int | None = None,
             conv_only: bool = False) -> dict[str, object]:
    """The build's kernels timed alone (time_kernels), or with `conv_only` the Conv launch alone
    (events around each launch of a captured graph: the Relu before it excluded)."""
    import torch

    forced: dict[str, int] = {}
    if variant is not None:
        forced.update(conv_tile=variant[0], conv_split=variant[1], conv_ksplit=variant[2])
    if stages is not None:
        forced["conv_stages"] = stages
    tuning = ForcedVariant(**forced) if forced else None
    built = pyc_cli.build(path, work / f"{path.stem}_{variant}_{stages}.pyc", target="cuda", precision="fp16",
                          force=True, tuning=tuning)  # type: ignore[arg-type]
    kernel = next(n.ann.kernel for n in built.graph.nodes if n.op == "Conv")
    launches = json.loads((built.artifact / "src" / "launches.json").read_text())["launches"]
    index = next(i for i, step in enumerate(launches) if step["op"] == "Conv")
    launch = launches[index]
    source = (built.artifact / "src" / "model.cu").read_text()
    with pyc_cli.load(built.artifact) as model:
        out = model.run({"x": x})["y"]
        error = relative_error(torch.from_numpy(out).cuda(), reference)
        if conv_only:
            from cuda_kernel_times import evented_times

            median = statistics.median(evented_times(model, repeat, 3)[index])
        else:
            median = statistics.median(model.time_kernels({"x": x}, repeat, warmup=5))
    # the depth that ran: 2 unless the kernel's slices live in dynamic shared memory
    ran = stages if launch["shared_bytes"] > 0 else 2
    return {"kernel": kernel.candidate, "params": dict(kernel.params), "grid": launch["grid"],
            "block": launch["block"], "shared_bytes": launch["shared_bytes"], "stages": ran,
            "cp_async_gather": "PYC_DYNAMIC_SHARED(smem)" in source,
            "median_ms": median, "rel_error_vs_float32": error}


def time_torch(x, w, b, stride: int, repeat: int) -> tuple[float, object]:  # noqa: ANN001
    import torch

    def call():  # noqa: ANN202
        return torch.relu(torch.nn.functional.conv2d(x, w, b, stride, w.shape[-1] // 2))

    for _ in range(5):
        out = call()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeat):
        start.record()
        out = call()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times), out


def default_over_best(ours: dict[str, object], by_variant: dict[str, dict[str, object]]) -> float | None:
    if not by_variant:
        return None
    best = min(float(v["median_ms"]) for v in by_variant.values())  # type: ignore[arg-type]
    return float(ours["median_ms"]) / best  # type: ignore[arg-type]


def by_stages(batch: int, shape: tuple[int, ...], repeat: int, stages: list[int], inputs: list[str],
              work: Path) -> dict[str, dict[str, dict[str, object]]]:
    """Per input type (float32, fp16) and conv_stages: the conv's time (fp16: its launch alone)."""
    import torch

    size, c, oc, k, stride, _ = shape
    found: dict[str, dict[str, dict[str, object]]] = {}
    for kind in inputs:
        rng = np.random.default_rng(size * c + oc)
        half = kind == "fp16"
        path, w, b = conv_model(work, batch, size, c, oc, k, stride, rng, half_input=half, suffix="_stages")
        x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
        xt, wt, bt = (torch.from_numpy(a).cuda() for a in (x, w, b))
        conv_input = torch.relu(xt) if half else xt
        reference = torch.relu(torch.nn.functional.conv2d(conv_input, wt, bt, stride, k // 2))
        found[kind] = {}
        for depth in stages:
            timed = time_pyc(path, work, x, repeat, reference, stages=depth, conv_only=half)
            found[kind][str(depth)] = {key: timed[key] for key in (
                "median_ms", "stages", "shared_bytes", "grid", "block", "rel_error_vs_float32")}
        path.unlink()
    return found


def bench(batch: int, shape: tuple[int, ...], repeat: int, sweep: bool, work: Path,
          stages: list[int], inputs: list[str]) -> dict[str, object]:
    import torch

    size, c, oc, k, stride, uses = shape
    rng = np.random.default_rng(size * c + oc)
    path, w, b = conv_model(work, batch, size, c, oc, k, stride, rng)
    x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
    xt, wt, bt = (torch.from_numpy(a).cuda() for a in (x, w, b))
    reference = torch.relu(torch.nn.functional.conv2d(xt, wt, bt, stride, k // 2))
    ours = time_pyc(path, work, x, repeat, reference)
    by_variant = {}
    for variant in VARIANTS if sweep else ():
        if variant[0] == 128 and oc <= 64:
            continue
        forced = time_pyc(path, work, x, repeat, reference, variant)
        by_variant[f"conv_tile={variant[0]},conv_split={variant[1]},conv_ksplit={variant[2]}"] = {
            "median_ms": forced["median_ms"], "grid": forced["grid"],
            "rel_error_vs_float32": forced["rel_error_vs_float32"]}
    pipelines = by_stages(batch, shape, repeat, stages, inputs, work)
    half = [t.half() for t in (xt, wt, bt)]
    torch_ms, out = time_torch(*half, stride, repeat)
    last = [half[0].to(memory_format=torch.channels_last), half[1].to(memory_format=torch.channels_last),
            half[2]]
    torch_cl_ms, out_cl = time_torch(*last, stride, repeat)
    row = {"batch": batch, "size": size, "C": c, "OC": oc, "kernel": k, "stride": stride, "uses": uses,
           "pyc": ours, "pyc_by_variant": by_variant, "pyc_by_stages": pipelines,
           "torch_nchw_ms": torch_ms, "torch_channels_last_ms": torch_cl_ms,
           "torch_rel_error": max(relative_error(out, reference), relative_error(out_cl, reference)),
           # the sweep's fastest variant, and how far the default is from it
           "best_variant": min(by_variant, key=lambda v: by_variant[v]["median_ms"]) if by_variant else None,
           "default_over_best": default_over_best(ours, by_variant),
           "pyc_over_cudnn": float(ours["median_ms"]) / min(torch_ms, torch_cl_ms),  # type: ignore[arg-type]
           "correct": all(float(r["rel_error_vs_float32"]) <= TOLERANCE  # type: ignore[arg-type]
                          for r in (ours, *by_variant.values(),
                                    *(t for kind in pipelines.values() for t in kind.values())))}
    print(json.dumps(row), flush=True)
    path.unlink()
    return row


def stage_cells(r: dict[str, object]) -> str:
    """conv_stages' times (ms) on each input type, "2/3/4" style (what ran in brackets where a
    forced depth did not apply)."""
    cells = []
    for kind, times in r["pyc_by_stages"].items():  # type: ignore[attr-defined]
        cells.append(kind + " " + " / ".join(
            f"{float(t['median_ms']):.4f}" + ("" if t["stages"] == int(depth) else f" ({t['stages']})")
            for depth, t in times.items()))
    return "; ".join(cells)


def table(rows: list[dict[str, object]]) -> str:
    """One line per shape: PyC (default) against cuDNN's faster layout, the grid that ran, and
    each conv_stages on each input type."""
    lines = ["| batch | input | C -> OC | k/s | uses | PyC ms | cuDNN ms | PyC/cuDNN | grid | best variant "
             "| by conv_stages (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        pyc = r["pyc"]
        cudnn = min(float(r["torch_nchw_ms"]), float(r["torch_channels_last_ms"]))  # type: ignore[arg-type]
        lines.append(f"| {r['batch']} | {r['size']} | {r['C']} -> {r['OC']} | {r['kernel']}/{r['stride']} "
                     f"| {r['uses']} | {pyc['median_ms']:.4f} | {cudnn:.4f} | "  # type: ignore[index]
                     f"{float(pyc['median_ms']) / cudnn:.2f} | {pyc['grid']} | {r['best_variant']} "  # type: ignore[index]
                     f"| {stage_cells(r)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sweep", action="store_true", help="time every (tile, split) variant too")
    parser.add_argument("--stages", type=int, nargs="*", default=[2, 3, 4],
                        help="conv_stages to time on each of --inputs (none: skip)")
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS),
                        help="input types the conv_stages are timed on")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import torch

    torch.backends.cudnn.benchmark = True
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as work:
        for batch in args.batches:
            rows += [bench(batch, shape, args.repeat, args.sweep, Path(work), args.stages, args.inputs)
                     for shape in RESNET50_CONVS]
    sums = {}
    for batch in args.batches:
        mine = [r for r in rows if r["batch"] == batch]
        sums[f"b{batch}"] = {
            "pyc_ms": sum(r["uses"] * r["pyc"]["median_ms"] for r in mine),  # type: ignore[index, operator]
            "torch_nchw_ms": sum(r["uses"] * r["torch_nchw_ms"] for r in mine),  # type: ignore[operator]
            "torch_channels_last_ms": sum(r["uses"] * r["torch_channels_last_ms"] for r in mine),  # type: ignore[operator]
            # the whole conv time at each conv_stages, per input type (fp16: the convs alone)
            "pyc_by_stages_ms": {kind: {str(depth): sum(
                r["uses"] * float(r["pyc_by_stages"][kind][str(depth)]["median_ms"]) for r in mine)  # type: ignore[index, operator]
                for depth in args.stages} for kind in (args.inputs if args.stages else ())}}
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "pyc_version": pyc_cli.__version__, "results": rows, "resnet50_sum_ms": sums,
              "all_correct": all(bool(r["correct"]) for r in rows),
              "command": "python benchmarks/cuda_conv_bench.py " + " ".join(sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=1))
    print(table(rows))
    return 0 if result["all_correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
