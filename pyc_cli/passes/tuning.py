"""The tuning database interface: measured kernel choices that override the cost model.

`select_kernels` asks the database first, by a node's kernel signature (target, op, value types,
ONNX attributes, fused programs: everything a kernel's code depends on, no names). A database
answers with a kernel choice or None; the default one knows nothing, so the cost model decides.
A database filled from timings (`pyc build --tune`, pyc_cli/tune.py; stored by
passes/tuning_db.py) implements the same `lookup`, and `measurements` gives the timings behind
a choice for the decision log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..ir.annotations import KernelChoice
from ..ir.ewprogram import format_program
from ..ir.graph import Graph, Node
from ..ir.text import format_attr


@dataclass(frozen=True)
class KernelSignature:
    """What identifies a kernel's work, independent of value and node names."""

    target: str
    op: str
    inputs: tuple[str, ...]  # value types as the text IR prints them ("" for an absent input)
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, str], ...]  # ONNX attributes, printed
    epilogue: tuple[str, ...] = ()
    prologue: tuple[str, ...] = ()


def kernel_signature(node: Node, graph: Graph, target: str) -> KernelSignature:
    def types(names: list[str]) -> tuple[str, ...]:
        return tuple(str(graph.types[n]) if n else "" for n in names)

    return KernelSignature(
        target, node.op, types(node.inputs), types(node.outputs),
        tuple((key, format_attr(node.attrs[key])) for key in sorted(node.attrs)),
        tuple(format_program(node.ann.epilogue)), tuple(format_program(node.ann.prologue)))


def signature_key(signature: KernelSignature) -> str:
    """The signature as one stable line of JSON (the tuning database's key; no target: the
    database files entries under a target-and-CPU section)."""
    return json.dumps([signature.op, list(signature.inputs), list(signature.outputs),
                       [list(a) for a in signature.attrs], list(signature.epilogue),
                       list(signature.prologue)], separators=(",", ":"))


@dataclass(frozen=True)
class Measurement:
    """One timed variant: a candidate with explicit tunable values, its median time per call,
    and whether its output matched the default candidate's ("ok", "wrong", "failed")."""

    candidate: str
    params: tuple[tuple[str, int], ...]
    median_ms: float | None
    status: str = "ok"

    def to_json(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "params": dict(self.params),
                "median_ms": self.median_ms, "status": self.status}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Measurement:
        median = entry.get("median_ms")
        return cls(str(entry["candidate"]),
                   tuple(sorted((str(k), int(v)) for k, v in dict(entry.get("params", {})).items())),
                   None if median is None else float(median), str(entry.get("status", "ok")))

    def label(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.candidate}({inner})" if inner else self.candidate


class TuningDatabase(Protocol):
    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        """The measured best choice for this work, or None when nothing was measured."""
        ...

    # optional: def measurements(self, signature) -> tuple[Measurement, ...], every variant timed
    # for this work, fastest first (select_kernels logs them with the choice when present)


class EmptyTuningDatabase:
    """The default: nothing measured, the cost model decides everywhere."""

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return None

    def measurements(self, signature: KernelSignature) -> tuple[Measurement, ...]:
        return ()


@dataclass
class InMemoryTuningDatabase:
    """Choices held in a dict (tests; the base of a stored database)."""

    entries: dict[KernelSignature, KernelChoice] = field(default_factory=dict)

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return self.entries.get(signature)

    def measurements(self, signature: KernelSignature) -> tuple[Measurement, ...]:
        return ()
