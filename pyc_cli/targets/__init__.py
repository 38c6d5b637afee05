"""The targets PyC compiles for, by name (`pyc build --target` offers exactly these; a
manifest's "target" must name one, PYC-E032 otherwise). Each target lives in its own package
(targets/cpu/: kernel candidates and kernel contexts); targets/base.py says what a target is."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import PycError
from .base import Target


def _cpu_target(cpu: str, cpu_features: tuple[str, ...]) -> Target:
    from .cpu.features import resolve_march
    from .cpu.target import CpuTarget  # imported on use: the CLI lists target names without building

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
