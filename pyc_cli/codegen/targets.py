"""Code generation targets. A target turns a lowered graph into sources and a loadable library;
adding CUDA adds a `Target` subclass and a template directory, not a fork of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PycError
from ..ir.graph import Graph
from ..planning.plan import MemoryPlan
from .resources import templates_dir
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


def get_target(name: str) -> Target:
    from .cpu import CpuTarget

    targets: dict[str, type[Target]] = {"cpu": CpuTarget}
    if name not in targets:
        raise PycError("E050", f"unknown target {name!r}", hint=f"use one of {sorted(targets)}")
    return targets[name]()
