"""Golden dumps of the reference models: IR after passes, memory plan, decision log, generated C.

`python tests/golden_tool.py --write` (or `make golden`) regenerates golden/; test_golden.py
compares a fresh build with it and shows a unified diff on any change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "tests" / "models"
GOLDEN = REPO / "golden"

# (model file, fixed input shapes, mode)
REFERENCE_BUILDS: dict[str, tuple[str, dict[str, tuple[int, ...]], str]] = {
    "mlp": ("mlp.onnx", {"x": (4, 64)}, "balanced"),
    "cnn": ("cnn.onnx", {"image": (2, 3, 32, 32)}, "balanced"),
    "transformer": ("transformer.onnx", {"input_ids": (2, 16), "attention_mask": (2, 16)},
                    "balanced"),
}
GOLDEN_FILES = ("model.ir", "memory_plan.json", "decisions.jsonl", "src/model.c")
# the GEMM kernels follow the target's vector ISA: goldens are built for one fixed x86-64 level
# (AVX2 + FMA), so they do not depend on the machine that builds them
GOLDEN_CPU = "x86-64-v3"
# the CUDA target's sources of one reference model (rendered without NVRTC, so they are checked
# on machines without the CUDA wheels too), at float32 and at fp16 (16-bit activations in the
# arena: model.ir shows which values are f16): golden/cuda_NAME/
CUDA_BUILDS = {"transformer": (*REFERENCE_BUILDS["transformer"], "fp32"),
               "transformer_fp16": (*REFERENCE_BUILDS["transformer"], "fp16")}
CUDA_FILES = ("model.cu", "launches.json", "model.ir")


def golden_dumps(name: str, out_dir: Path) -> dict[str, str]:
    """Build a reference model into `out_dir` and return its golden files' texts."""
    sys.path.insert(0, str(REPO))
    import pyc_cli

    model, shapes, mode = REFERENCE_BUILDS[name]
    pyc_cli.build(MODELS / model, out_dir, mode=mode, input_shapes=shapes, cpu=GOLDEN_CPU)
    return {f: (out_dir / f).read_text() for f in GOLDEN_FILES}


def cuda_golden_dumps(name: str) -> dict[str, str]:
    """The CUDA sources (kernels and launch plan) of a reference model."""
    sys.path.insert(0, str(REPO))
    from pyc_cli.abi import io_infos
    from pyc_cli.api import compile_graph
    from pyc_cli.ir.text import print_graph
    from pyc_cli.planning.weights import layout_weights, weights_bytes, weights_checksum
    from pyc_cli.targets.base import ModelInfo

    model, shapes, mode, precision = CUDA_BUILDS[name]
    graph, ctx = compile_graph(MODELS / model, mode, shapes, target="cuda", precision=precision)
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph, {}, ctx.target.constant_conversions(graph))
    info = ModelInfo("golden", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, weights_checksum(weights_bytes(graph, layout)), name)
    sources = {**ctx.target.emit(graph, plan, layout, info), "model.ir": print_graph(graph)}
    return {f: sources[f] for f in CUDA_FILES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite golden/ from fresh builds")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in REFERENCE_BUILDS:
            dumps = golden_dumps(name, Path(tmp) / f"{name}.pyc")
            for relative, text in dumps.items():
                target = GOLDEN / name / relative.replace("src/", "")
                if args.write:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
            print(f"{name}: {'written' if args.write else 'built'} {len(dumps)} golden files")
        for name in CUDA_BUILDS:
            dumps = cuda_golden_dumps(name)
            for relative, text in dumps.items():
                if args.write:
                    (GOLDEN / f"cuda_{name}").mkdir(parents=True, exist_ok=True)
                    (GOLDEN / f"cuda_{name}" / relative).write_text(text)
            print(f"cuda {name}: {'written' if args.write else 'built'} {len(dumps)} golden files")


if __name__ == "__main__":
    main()
