"""The Python API the CLI is a thin layer over: `build(model, out_dir, ...)` and `load(artifact)`."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .artifact.manifest import FORMAT, FORMAT_VERSION, MANIFEST, dumps, hash_tree
from .artifact.reader import read_manifest, verify_files
from .artifact.source import describe_source
from .artifact.source import keep_source as keep_source_copy
from .artifact.writer import staging_directory, write_bytes, write_text
from .codegen.abi_name import check_name, default_name, soname
from .codegen.cpu import io_infos
from .codegen.targets import ModelInfo, get_target
from .codegen.weights import layout_weights, weights_bytes, weights_checksum
from .errors import PycError
from .frontend.onnx_import import import_model
from .ir.graph import Graph
from .ir.text import print_graph
from .ir.types import check_addressable
from .passes.context import MODES, BuildOptions, PassContext
from .passes.pipeline import PASS_NAMES, run_pipeline
from .planning.plan import MemoryPlan
from .planning.timeline import timeline_svg
from .runtime.native import (
    ENTRY_POINTS,
    IO_ENTRY_POINTS,
    CompiledModel,
    ModelFunctions,
    TensorSpec,
    check_io_specs,
    library_addresses,
)


@dataclass
class BuildResult:
    artifact: Path
    graph: Graph
    plan: MemoryPlan
    context: PassContext


def compile_graph(model_path: str | Path, mode: str = "balanced",
                  input_shapes: dict[str, tuple[int, ...]] | None = None, target: str = "cpu",
                  stop_after: str | None = None) -> tuple[Graph, PassContext]:
    """Import and run the pass pipeline (no files written); used by build, tests and tools."""
    if mode not in MODES:
        raise PycError("E050", f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if stop_after is not None and stop_after not in PASS_NAMES:
        raise PycError("E050", f"unknown pass {stop_after!r}", hint=f"passes: {', '.join(PASS_NAMES)}")
    ctx = PassContext(BuildOptions(mode=mode, target=target))
    # compile-time folding computes IEEE results (inf, nan) as the kernels would: no warnings
    with np.errstate(all="ignore"):
        try:
            graph = import_model(model_path, input_shapes, ctx)
        except PycError as exc:
            raise _with_every_problem(exc, model_path, input_shapes) from exc
        ctx.artifacts["source_ops"] = dict(sorted(Counter(n.op for n in graph.nodes).items()))
        return run_pipeline(graph, ctx, stop_after), ctx


def _with_every_problem(exc: PycError, model_path: str | Path,
                        input_shapes: dict[str, tuple[int, ...]] | None) -> PycError:
    """A build stopped by an unsupported node reports every problem of the model, as
    `pyc check` does, not only the first."""
    if exc.code not in ("E007", "E008", "E009", "E010"):
        return exc
    from .check import check_model

    try:
        report = check_model(model_path, input_shapes)
    except PycError:
        return exc
    if report.failing_nodes <= 1:
        return exc
    return PycError(exc.code, f"{exc.what}; all {report.failing_nodes} node(s) that cannot be "
                    f"compiled: {report.summary()}", where=Path(model_path).name,
                    hint="`pyc check MODEL` prints this report; see docs/op_coverage.md")


# with a memory budget, modes are tried fastest first and the first that fits is kept
MODES_BY_SPEED = ("latency_first", "balanced", "memory_first")


def compile_within_budget(model_path: str | Path, budget: int,
                          input_shapes: dict[str, tuple[int, ...]] | None = None,
                          target: str = "cpu") -> tuple[Graph, PassContext]:
    """The fastest mode whose arena fits `budget` bytes, or PYC-E011 naming the smallest arena."""
    arenas = {}
    for mode in MODES_BY_SPEED:
        graph, ctx = compile_graph(model_path, mode, input_shapes, target)
        plan: MemoryPlan = ctx.artifacts["memory_plan"]
        arenas[mode] = plan.arena_bytes
        if plan.arena_bytes <= budget:
            ctx.log("plan_memory", [], "memory_budget",
                    f"{mode} is the fastest mode whose arena fits the budget",
                    before=budget, after=plan.arena_bytes, arenas=dict(arenas))
            return graph, ctx
    smallest = min(arenas.values())
    raise PycError("E011", f"no plan fits the memory budget of {budget} bytes; the smallest "
                   f"achievable arena is {smallest} bytes ({min(arenas, key=arenas.get)})",
                   where=f"arenas by mode: {arenas}",
                   hint=f"raise --memory-budget to at least {smallest} bytes")


def build(model_path: str | Path, out_dir: str | Path | None = None, mode: str = "balanced",
          input_shapes: dict[str, tuple[int, ...]] | None = None,
          target: str = "cpu", memory_budget: int | None = None,
          keep_source: bool = False, name: str | None = None) -> BuildResult:
    """Compile an ONNX model into an artifact directory (default: MODEL.pyc beside the model).

    `name` prefixes every C symbol the library exports (`NAME_create`, `NAME_run`, ...) and
    its SONAME (`libNAME.so`); default: the model file name made a C identifier.
    With `memory_budget` (bytes), the fastest mode whose arena fits is chosen instead of `mode`.
    `keep_source` copies the model (and its external data) into `source/`, which `pyc run
    --compare` runs the reference on; without it, the model is looked up beside the artifact
    (by the recorded sha256) or given with `--model PATH`."""
    model_path = Path(model_path)
    out = Path(out_dir) if out_dir is not None else model_path.with_suffix(".pyc")
    prefix = check_name(name) if name is not None else default_name(model_path)
    if memory_budget is not None:
        graph, ctx = compile_within_budget(model_path, memory_budget, input_shapes, target)
        mode = ctx.options.mode
    else:
        graph, ctx = compile_graph(model_path, mode, input_shapes, target)
    plan: MemoryPlan = ctx.artifacts["memory_plan"]
    backend = get_target(target)
    layout = layout_weights(graph)
    check_addressable("the weights file", layout.total_bytes, model_path.name)
    blob = weights_bytes(graph, layout)
    info = ModelInfo(__version__, io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()),
                     plan.arena_bytes, layout.total_bytes, weights_checksum(blob), prefix)
    sources = backend.emit(graph, plan, layout, info)
    with staging_directory(out) as staging:
        for name, text in sorted(sources.items()):
            write_text(staging, f"src/{name}", text)
        write_bytes(staging, "weights.bin", blob)
        write_text(staging, "model.ir", print_graph(graph))
        write_text(staging, "memory_plan.json", dumps(plan.to_json()))
        write_text(staging, "memory_timeline.svg",
                   timeline_svg(plan, display_name(model_path), len(graph.nodes)))
        write_text(staging, "decisions.jsonl", "".join(
            dumps_line(d.to_json()) for d in ctx.decisions))
        source = (keep_source_copy(model_path, staging) if keep_source
                  else describe_source(model_path))
        toolchain = backend.compile(staging / "src", staging, prefix)
        toolchain["march"] = getattr(backend, "march", "")
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "pyc_version": __version__,
            "model": {**source, "file": display_name(model_path), "graph_name": graph.name,
                      "opset": graph.opset,
                      "source_ops": ctx.artifacts["source_ops"],
                      "compiled_nodes": len(graph.nodes)},
            "target": target, "mode": mode,
            "flags": {"mode": mode, "target": target, "memory_budget": memory_budget,
                      "keep_source": keep_source, "name": prefix,
                      "input_shapes": {k: list(v) for k, v in sorted((input_shapes or {}).items())}},
            "toolchain": toolchain,
            "inputs": [_io_entry(i) for i in info.inputs],
            "outputs": [_io_entry(o) for o in info.outputs],
            "arena_bytes": plan.arena_bytes,
            "weights": {"file": "weights.bin", "bytes": layout.total_bytes,
                        "checksum": info.weights_checksum, "layout": layout.to_json()["offsets"]},
            "library": backend.library_name, "header": "src/model.h",
            "symbol_prefix": prefix, "soname": soname(prefix),
            "files": hash_tree(staging),
        }
        write_text(staging, MANIFEST, dumps(manifest))
    return BuildResult(out, graph, plan, ctx)


def display_name(path: Path) -> str:
    """A file name as UTF-8 text (bytes that do not decode, kept by Python as lone surrogates,
    are written as escapes): what the manifest and reports may hold."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def dumps_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"


def _io_entry(info: Any) -> dict[str, Any]:
    return {"name": info.name, "dtype": info.dtype, "shape": info.shape}


def load(artifact: str | Path) -> CompiledModel:
    """Verify an artifact's hashes, then load its library. The model is reusable across runs
    and thread-safe: any number of threads may call its `run` at once (each run works in an
    execution context of its own; see CompiledModel). Close it (or use `with`) to free it."""
    root = Path(artifact)
    manifest = read_manifest(root)
    verify_files(root, manifest)
    library_path = _content_addressed_copy(root / manifest["library"],
                                           manifest["files"][manifest["library"]])
    try:
        library = ctypes.CDLL(str(library_path))
        addresses = library_addresses(library, manifest["symbol_prefix"],
                                      ENTRY_POINTS + IO_ENTRY_POINTS)
    except (OSError, AttributeError) as exc:
        raise PycError("E030", f"cannot load {manifest['library']}: {exc}", where=str(root),
                       hint="rebuild the artifact on this machine") from exc
    inputs = [TensorSpec.from_manifest(e) for e in manifest["inputs"]]
    outputs = [TensorSpec.from_manifest(e) for e in manifest["outputs"]]
    check_io_specs(addresses, inputs, outputs)
    return CompiledModel(ModelFunctions(addresses), root / manifest["weights"]["file"],
                         inputs, outputs, library, manifest["arena_bytes"])


def _content_addressed_copy(library: Path, expected_sha256: str) -> Path:
    """Load native code from a private copy named by its hash: the bytes loaded are the bytes
    verified (no swap between check and dlopen), and a rebuilt library at the same path is not
    shadowed by the old one (dlopen reuses an already-loaded path)."""
    try:
        data = library.read_bytes()
    except OSError as exc:
        raise PycError("E030", f"cannot read {library.name}: {exc.strerror or exc}",
                       where=str(library), hint="rebuild the artifact") from exc
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise PycError("E031", f"{library.name} does not match its sha256 in {MANIFEST}",
                       where=str(library), hint="the artifact was modified; rebuild it")
    cache = Path(tempfile.gettempdir()) / f"pyc-libs-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    target = cache / f"{expected_sha256}.so"
    if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != expected_sha256:
        handle, name = tempfile.mkstemp(dir=cache, suffix=".tmp")
        os.close(handle)
        staging = Path(name)
        staging.write_bytes(data)
        staging.replace(target)
    return target
