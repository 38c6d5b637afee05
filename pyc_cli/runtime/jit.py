"""The llvmlite path: JIT-link the artifact's relocatable objects into this process (ORC LLJIT)
and run them through the same C ABI as the shared library."""

from __future__ import annotations

import ctypes.util
import tempfile
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm

from ..artifact.reader import read_manifest, verify_files
from ..codegen.cpu import CpuTarget
from .native import ENTRY_POINTS, CompiledModel, ModelFunctions, TensorSpec

_initialized = False


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
    verify_files(root, manifest)
    _init_llvm()
    with tempfile.TemporaryDirectory() as work:
        src = Path(work)
        for name in ("model.c", "model.h", "pyc_runtime.c", "pyc_runtime.h"):
            (src / name).write_bytes((root / "src" / name).read_bytes())
        objects = CpuTarget(manifest["toolchain"].get("march", "native")).compile_objects(src)
        builder = llvm.JITLibraryBuilder()
        for obj in objects:
            builder.add_object_img(obj.read_bytes())
        for name in ENTRY_POINTS:
            builder.export_symbol(name)
        for library in manifest["toolchain"].get("libraries", []):
            _load_system_library(library)
        builder.add_current_process()
        jit = llvm.create_lljit_compiler()
        tracker = builder.link(jit, "pyc_model")
    addresses = {name: tracker[name] for name in ENTRY_POINTS}
    keepalive: Any = (jit, tracker)
    return CompiledModel(ModelFunctions.from_addresses(addresses), root / "weights.bin",
                         [TensorSpec.from_manifest(e) for e in manifest["inputs"]],
                         [TensorSpec.from_manifest(e) for e in manifest["outputs"]],
                         keepalive, manifest.get("arena_bytes", 0))
