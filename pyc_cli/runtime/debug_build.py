"""The debug build behind `pyc run --per-node`.

Nothing is recompiled from the ONNX model: the graph after passes (model.ir), the memory plan
(memory_plan.json) and the weights layout are read back from the artifact, and model.c is
rendered from them twice: as the build did (it must equal the artifact's src/model.c byte for
byte) and with a run function that, after each step, copies the values that step defined out of
the arena. That one is compiled with the flags the artifact recorded, in a temporary directory;
the artifact is not touched.
"""

from __future__ import annotations

import ctypes
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..abi import io_infos, run_dims
from ..artifact.reader import load_graph
from ..errors import PycError
from ..ir.annotations import ALIAS_KERNELS
from ..ir.graph import Graph, Node
from ..planning.plan import MemoryPlan
from ..planning.weights import WeightsLayout
from ..runtime.native import CompiledModel, ModelFunctions, TensorSpec
from ..targets.base import ModelInfo, runtime_plan
from ..targets.cpu.kernel_context import KernelCall
from ..targets.cpu.target import CpuTarget, PointerTable


@dataclass(frozen=True)
class Tap:
    """One value copied out after schedule step `step` (the node that defines it)."""

    value: str
    step: int
    spec: TensorSpec


@dataclass
class _TapLine:
    index: int
    pointer: str
    nbytes: int


@dataclass
class _Step:
    step: int
    op: str
    call: KernelCall | None
    taps: list[_TapLine]


@dataclass
class ArtifactPlan:
    """What the artifact's code was generated from, read back from its files."""

    graph: Graph
    plan: MemoryPlan
    weights: WeightsLayout


def read_plan(artifact: Path, manifest: dict[str, Any]) -> ArtifactPlan:
    graph = load_graph(artifact, manifest)
    plan = MemoryPlan.from_json(json.loads((artifact / "memory_plan.json").read_text(
        encoding="utf-8")))
    weights = WeightsLayout(dict(manifest["weights"]["layout"]), manifest["weights"]["bytes"],
                            dict(manifest["weights"].get("packed", {})),
                            transformed=dict(manifest["weights"].get("transformed", {})))
    return ArtifactPlan(graph, plan, weights)


def model_info(source: ArtifactPlan, manifest: dict[str, Any],
               borrows_weights: bool = False) -> ModelInfo:
    """The model-level template context, as the build made it (`borrows_weights`: a shape
    bucket's plan, which the build gives NAME_create_borrowed)."""
    graph = source.graph
    return ModelInfo(manifest["pyc_version"], io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs), source.plan.arena_bytes,
                     manifest["weights"]["bytes"], manifest["weights"]["checksum"],
                     manifest["symbol_prefix"], manifest["flags"].get("threads", 0),
                     **run_dims(graph), **runtime_plan(source.plan),
                     borrows_weights=borrows_weights)


def artifact_calls(source: ArtifactPlan, manifest: dict[str, Any]) -> list[KernelCall]:
    """The artifact's kernel calls, in schedule order (one per node that is not a view)."""
    cpu = manifest["cpu"]  # the artifact's kernels were chosen for its -march and features
    return CpuTarget(cpu["march"], tuple(cpu["requested_features"])).kernel_calls(
        source.graph, source.plan, source.weights)


def called_nodes(graph: Graph) -> list[Node]:
    """The nodes that have a kernel call, in call order (views and in-place results have none)."""
    return [node for node in graph.nodes if node.ann.kernel_name not in ALIAS_KERNELS]


def debug_sources(source: ArtifactPlan, manifest: dict[str, Any], taps: list[Tap]
                  ) -> tuple[str, str]:
    """(model.c as the artifact has it, model.c of the debug build). Both come from the same
    kernel calls; the debug one's run function copies each tapped value out after the step that
    defines it. The kernels keep one caller each, so they compile exactly as in the artifact."""
    calls = artifact_calls(source, manifest)
    pointers = PointerTable(source.graph, source.plan, source.weights)
    by_step: dict[int, list[_TapLine]] = {}
    for index, tap in enumerate(taps):
        nbytes = source.graph.types[tap.value].nbytes
        if nbytes:
            by_step.setdefault(tap.step, []).append(
                _TapLine(index, pointers.expr(tap.value, False), nbytes))
    remaining = iter(calls)
    steps = [_Step(position, node.op,
                   None if node.ann.kernel_name in ALIAS_KERNELS else next(remaining),
                   by_step.get(position, []))
             for position, node in enumerate(source.graph.nodes)]
    info = model_info(source, manifest)
    return CpuTarget.model_source(info, calls), CpuTarget.model_source(info, calls, steps)


class DebugModel(CompiledModel):
    """The artifact's model with the tapping entry point; run() returns outputs and taps."""

    def __init__(self, library_path: Path, prefix: str, weights_path: Path,
                 inputs: list[TensorSpec], outputs: list[TensorSpec], taps: list[Tap]) -> None:
        library = ctypes.CDLL(str(library_path))
        super().__init__(ModelFunctions.from_library(library, prefix), weights_path, inputs,
                         outputs, library)
        pointer_array = ctypes.POINTER(ctypes.c_void_p)
        self._run_debug = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, pointer_array,
                                           pointer_array, pointer_array)(
            ctypes.cast(getattr(library, f"{prefix}_run_debug"), ctypes.c_void_p).value)
        self.taps = taps

    def run_with_taps(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                                   dict[str, np.ndarray]]:
        """One call at a time: it runs in the model's own context (NAME_run_debug), not a
        pooled one (`pyc run --per-node` runs once)."""
        self._check_open()
        arrays = self.check_feeds(feeds)
        outputs = {spec.name: np.empty(spec.shape, spec.dtype) for spec in self.outputs}
        tapped = {tap.value: np.zeros(tap.spec.shape, tap.spec.dtype) for tap in self.taps}
        tap_arrays = [tapped[tap.value] for tap in self.taps]
        status = self._run_debug(self._handle, self._pointers(arrays),
                                 self._pointers(list(outputs.values())), self._pointers(tap_arrays))
        if status != 0:
            raise PycError("E042", f"debug run failed: {self._status(status)}",
                           hint="check the input values (e.g. index inputs in range)")
        return outputs, tapped


def build_debug_model(artifact: Path, manifest: dict[str, Any], source: ArtifactPlan,
                      taps: list[Tap], work: Path) -> DebugModel:
    """Compile the debug library into `work` (a temporary directory) and load it."""
    computed = [d["name"] for d in manifest.get("dims", []) if d.get("computed")]
    if computed:  # taps are read at the upper bounds; these sizes are known only after a run
        raise PycError("E050", "--per-node does not compare models with sizes computed at run "
                       f"time ({', '.join(computed)}) yet", where="--per-node",
                       hint="compare the outputs: pyc run --compare ort without --per-node")
    library = compile_variant(artifact, manifest, *debug_sources(source, manifest, taps), work)
    return DebugModel(library, manifest["symbol_prefix"], artifact / "weights.bin",
                      [TensorSpec.from_manifest(e) for e in manifest["inputs"]],
                      [TensorSpec.from_manifest(e) for e in manifest["outputs"]], taps)


def compile_variant(artifact: Path, manifest: dict[str, Any], normal: str, variant: str,
                    work: Path) -> Path:
    """Compile the artifact's sources with model.c replaced by `variant` (another run function
    over the same kernel calls) into `work`; the library's path. PYC-E032 when this PyC does not
    regenerate the artifact's src/model.c (`normal`) byte for byte from its model.ir and memory
    plan: the variant would not run the artifact's code."""
    if normal != (artifact / "src" / "model.c").read_text(encoding="utf-8"):
        raise PycError("E032", "this PyC does not regenerate the artifact's src/model.c from its "
                       "model.ir and memory_plan.json, so a debug build would not run the same "
                       "code", where=str(artifact / "src" / "model.c"),
                       hint="rebuild the artifact with this PyC version")
    src = work / "src"
    shutil.copytree(artifact / "src", src)
    (src / "model.c").write_text(variant, encoding="utf-8")
    toolchain = manifest["toolchain"]
    library = work / "libmodel_debug.so"
    CpuTarget().compile_library(src, library, "model.c", list(toolchain["flags"]),
                                list(toolchain["libraries"]))
    return library


def tap_spec(graph: Graph, value: str) -> TensorSpec:
    ttype = graph.types[value]
    return TensorSpec(value, ttype.dtype.numpy, tuple(ttype.shape))

