"""The llvmlite path: JIT-link the artifact's relocatable objects into this process (ORC LLJIT)
and run them through the same C ABI as the shared library."""

from __future__ import annotations

import atexit
import ctypes.util
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar

import llvmlite.binding as llvm

from ..artifact.reader import read_manifest, require_files, verify_files
from ..errors import PycError
from ..targets.cpu.features import check_cpu
from ..targets.cpu.target import CpuTarget
from .native import (
    ENTRY_POINTS,
    IO_ENTRY_POINTS,
    CompiledModel,
    ModelFunctions,
    TensorSpec,
    check_io_specs,
)

_initialized = False
_open_models: weakref.WeakSet[CompiledModel] = weakref.WeakSet()


class PinnedJit:
    """Keeps a model's JIT (which owns the code the model's entry points point into) reachable
    from this module until the model is freed. Where a reference cycle holds the model (an
    exception's traceback), the collector finalizes the whole cycle in no set order: the JIT,
    freed first, took the code the model's destroy then called (a segfault at teardown)."""

    _pinned: ClassVar[dict[int, tuple[Any, Any]]] = {}

    def __init__(self, jit: Any, tracker: Any) -> None:
        self._pinned[id(self)] = (jit, tracker)

    def release(self) -> None:
        self._pinned.pop(id(self), None)


@atexit.register
def _close_open_models() -> None:
    """Models still open at exit are freed before the interpreter tears llvmlite down."""
    for model in list(_open_models):
        model.close()


def _init_llvm() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def _load_system_library(flag: str) -> None:
    """Make a -lNAME library's symbols resolvable by the JIT (e.g. libmvec's SIMD math)."""
    found = ctypes.util.find_library(flag.removeprefix("-l"))
    if found:
        llvm.load_library_permanently(found)


def jit_load(artifact: str | Path) -> CompiledModel:
    """Compile the artifact's sources to objects and link them with llvmlite's JIT."""
    root = Path(artifact)
    manifest = read_manifest(root)
    if manifest["target"] != "cpu":  # a CUDA artifact holds no C sources to JIT
        raise PycError("E032", f"the JIT loads CPU artifacts, not {manifest['target']} ones",
                       where=str(root), hint="load it with pyc_cli.load()")
    check_cpu(manifest["cpu"], str(root))  # the recorded -march and features are compiled for
    verify_files(root, manifest)
    _check_jit_inputs(root, manifest)
    _init_llvm()
    with tempfile.TemporaryDirectory() as work:
        src = Path(work)
        for name in _jit_sources(manifest):
            (src / name).write_bytes((root / "src" / name).read_bytes())
        cpu = manifest["cpu"]
        objects = CpuTarget(cpu["march"], tuple(cpu["requested_features"])).compile_objects(src)
        builder = llvm.JITLibraryBuilder()
        for obj in objects:
            builder.add_object_img(obj.read_bytes())
        symbols = {suffix: f"{manifest['symbol_prefix']}_{suffix}"
                   for suffix in ENTRY_POINTS + IO_ENTRY_POINTS}
        for symbol in symbols.values():
            builder.export_symbol(symbol)
        for library in manifest["toolchain"].get("libraries", []):
            _load_system_library(library)
        builder.add_current_process()
        jit = llvm.create_lljit_compiler()
        tracker = builder.link(jit, "pyc_model")
    addresses = {suffix: tracker[symbol] for suffix, symbol in symbols.items()}
    keepalive = PinnedJit(jit, tracker)
    inputs = [TensorSpec.from_manifest(e) for e in manifest["inputs"]]
    outputs = [TensorSpec.from_manifest(e) for e in manifest["outputs"]]
    try:
        check_io_specs(addresses, inputs, outputs)
        model = CompiledModel(ModelFunctions(addresses), root / manifest["weights"]["file"],
                              inputs, outputs, keepalive, manifest["arena_bytes"])
    except PycError:
        keepalive.release()
        raise
    model.read_run_facts(root, manifest)
    _open_models.add(model)
    return model


JIT_SOURCES = ("model.c", "model.h", "pyc_runtime.c", "pyc_runtime.h")
# a generic plan with shape buckets also includes the sha256 its dispatch checks them with
BUCKETS_JIT_SOURCE = "pyc_sha256.h"


def _jit_sources(manifest: dict[str, Any]) -> tuple[str, ...]:
    return JIT_SOURCES + ((BUCKETS_JIT_SOURCE,) if manifest.get("buckets") else ())


def _check_jit_inputs(root: Path, manifest: dict[str, Any]) -> None:
    """The sources compiled here must be hash-verified (the manifest check already allows
    only known system libraries)."""
    require_files(root, manifest, [f"src/{name}" for name in _jit_sources(manifest)],
                  "the JIT loader")
