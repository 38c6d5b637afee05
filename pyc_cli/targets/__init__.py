"""The targets PyC compiles for, by name (`pyc build --target` offers exactly these; a
manifest's "target" must name one, PYC-E032 otherwise). Each target lives in its own package
(targets/cpu/, targets/cuda/: kernel candidates and kernel contexts); targets/base.py says what
a target is."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import PycError
from .base import Target


def _cpu_target(cpu: str, cpu_features: tuple[str, ...], arch: str | None,
                precision: str | None, winograd: bool, layout: str) -> Target:
    from .cpu.features import resolve_march
    from .cpu.target import CpuTarget  # imported on use: the CLI lists target names without building

    if precision not in (None, "fp32"):  # the CPU kernels compute in the model's own types
        raise PycError("E050", f"--precision {precision} applies to --target cuda only",
                       where="--precision", hint="drop --precision, or build with --target cuda")
    return CpuTarget(resolve_march(cpu), tuple(cpu_features), winograd, layout)


def _cuda_target(cpu: str, cpu_features: tuple[str, ...], arch: str | None,
                 precision: str | None, winograd: bool, layout: str) -> Target:
    from .cuda.target import CudaTarget  # cuda-python itself is imported only when compiling

    return CudaTarget(arch or "sm_90", precision or "fp32")


# the registry of targets by name (`pyc build --target` offers exactly these; a manifest's
# "target" must name one, PYC-E032 otherwise)
TARGETS: dict[str, Callable[[str, tuple[str, ...], str | None, str | None, bool, str], Target]] = {
    "cpu": _cpu_target, "cuda": _cuda_target}
TARGET_NAMES = tuple(TARGETS)
# `pyc build --layout`: the plain layout everywhere, the cost model's choice, or the blocked
# layout wherever a kernel has it (A/B builds, tests)
LAYOUTS = ("auto", "nchw", "blocked")
# plain by default: `auto`'s costs were fitted on ResNet-50 (~3% faster at 1 thread, within this
# machine's noise) and price PP-OCR det's small regions wrong (18 reorders; 6-12% slower,
# alternating builds, 6 Dec 2026), so the blocked layout is asked for, not assumed
DEFAULT_LAYOUT = "nchw"


def get_target(name: str, cpu: str = "native", cpu_features: tuple[str, ...] = (),
               arch: str | None = None, precision: str | None = None,
               winograd: bool = True, layout: str = DEFAULT_LAYOUT) -> Target:
    """The target `name`; the CPU target compiles for `cpu` (a -march value, or `portable`)
    with `cpu_features` (['+avx2', '-avx512f']) added or removed, with its Winograd 3x3
    convolution where it pays unless `winograd` is False, the CUDA target for the GPU
    architecture `arch` (default sm_90) at `precision` (fp32, tf32, fp16, bf16: default fp32;
    the CPU target takes none but fp32, PYC-E050); `layout` is the CPU target's channel
    layout policy (LAYOUTS: passes/assign_layouts.py)."""
    if name not in TARGETS:
        raise PycError("E050", f"unknown target {name!r}", hint=f"use one of {sorted(TARGETS)}")
    if layout not in LAYOUTS:
        raise PycError("E050", f"unknown layout {layout!r}", where="--layout",
                       hint=f"use one of {', '.join(LAYOUTS)}")
    return TARGETS[name](cpu, tuple(cpu_features), arch, precision, winograd, layout)
