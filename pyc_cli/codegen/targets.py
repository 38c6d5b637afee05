"""Code generation targets. A target turns a lowered graph into sources and a loadable library;
adding CUDA adds a `Target` subclass and a template directory, not a fork of the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PycError
from ..ir.graph import Graph
from ..planning.plan import MemoryPlan
from ..templating import templates_dir
from .weights import WeightsLayout


@dataclass(frozen=True)
class IoInfo:
    name: str
    dtype: str
    dtype_code: int
    shape: list[int]
    nbytes: int


@dataclass(frozen=True)
class ModelInfo:
    """Everything the model-level templates need besides the kernel calls."""

    pyc_version: str
    inputs: list[IoInfo]
    outputs: list[IoInfo]
    arena_bytes: int
    weights_bytes: int
    weights_checksum: int
    name: str  # the prefix of every exported symbol (codegen/abi_name.py)


class Target:
    name = ""
    template_subdir = ""
    library_name = ""

    def has_template(self, template: str) -> bool:
        return (templates_dir() / self.template_subdir / "kernels" / template).is_file()

    def emit(self, graph: Graph, plan: MemoryPlan, weights: WeightsLayout,
             info: ModelInfo) -> dict[str, str]:
        """Generated source files, name -> text."""
        raise NotImplementedError

    def compile(self, src_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
        """Build the library of the model called `name` from `src_dir` into `out_dir`; return
        the toolchain description."""
        raise NotImplementedError

    def toolchain(self) -> dict[str, Any]:
        raise NotImplementedError

    def cpu_record(self) -> dict[str, Any]:
        """The manifest's `cpu` record: what the code needs of the CPU that runs it."""
        raise NotImplementedError

def _cpu_target(cpu: str, cpu_features: tuple[str, ...]) -> Target:
    from .cpu import CpuTarget  # imported on use: the CLI lists target names without codegen
    from .cpu_features import resolve_march

    return CpuTarget(resolve_march(cpu), tuple(cpu_features))


# the registry of targets by name (`pyc build --target` offers exactly these; a manifest's
# "target" must name one, PYC-E032 otherwise)
TARGETS: dict[str, Callable[[str, tuple[str, ...]], Target]] = {"cpu": _cpu_target}
TARGET_NAMES = tuple(TARGETS)


def get_target(name: str, cpu: str = "native", cpu_features: tuple[str, ...] = ()) -> Target:
    """The target `name`; the CPU target compiles for `cpu` (a -march value, or `portable`)
    with `cpu_features` (['+avx2', '-avx512f']) added or removed."""
    if name not in TARGETS:
        raise PycError("E050", f"unknown target {name!r}", hint=f"use one of {sorted(TARGETS)}")
    return TARGETS[name](cpu, tuple(cpu_features))
