"""The tuning database interface: measured kernel choices that override the cost model.

`select_kernels` asks the database first, by a node's kernel signature (target, op, value types,
ONNX attributes, fused programs: everything a kernel's code depends on, no names). A database
answers with a kernel choice or None; the default one knows nothing, so the cost model decides.
A database filled from timings (autotuning) implements the same `lookup`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


class TuningDatabase(Protocol):
    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        """The measured best choice for this work, or None when nothing was measured."""
        ...


class EmptyTuningDatabase:
    """The default: nothing measured, the cost model decides everywhere."""

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return None


@dataclass
class InMemoryTuningDatabase:
    """Choices held in a dict (tests; the base of a stored database)."""

    entries: dict[KernelSignature, KernelChoice] = field(default_factory=dict)

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return self.entries.get(signature)
