"""Compiler facts about a node, kept apart from its ONNX attributes.

Passes record here what they decided (the kernel and its parameters, what was fused into the
node, where its output may overwrite an input); `node.attrs` holds only what the model (or a
decomposition) says the op computes. The text IR prints these after the attributes, as
`ann{...}`, and parses them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ewprogram import Instr

# kernel "candidates" that are not templates: the output is the input's bytes (a view), or every
# input was computed straight into its slice of the output (an in-place concat)
ALIAS_KERNELS = ("view", "in_place")

KernelParam = int | str


@dataclass
class KernelChoice:
    """The kernel candidate chosen for a node, its tunable parameters, and its scratch: the
    largest scratch the memory mode allows (`workspace_cap`, None: the candidate needs none)
    and what it takes under that cap."""

    candidate: str
    params: dict[str, KernelParam] = field(default_factory=dict)
    workspace_cap: int | None = None
    workspace_bytes: int = 0
    # the input this kernel may overwrite with its output in the build's mode (the planner
    # takes it when that input dies here); None: the kernel never writes over an input
    inplace_input: int | None = None

    @property
    def is_alias(self) -> bool:
        return self.candidate in ALIAS_KERNELS


@dataclass
class Annotations:
    """Every field's default means "nothing decided"; the text IR prints only the others."""

    kernel: KernelChoice | None = None
    # the scalar program of a pyc.Elementwise node, and the source nodes it computes
    program: list[Instr] = field(default_factory=list)
    fused_from: list[str] = field(default_factory=list)
    # a channel slice made by memory_first tiling: the node it was cut from
    tiled_from: str = ""
    # applied to each accumulator as the kernel stores it; its operands are inputs
    # [epilogue_first_input, len(inputs) - prologue_inputs)
    epilogue: list[Instr] = field(default_factory=list)
    epilogue_from: list[str] = field(default_factory=list)
    epilogue_first_input: int | None = None
    # applied to input 0 as the kernel reads it; its operands are the last prologue_inputs inputs
    prologue: list[Instr] = field(default_factory=list)
    prologue_from: list[str] = field(default_factory=list)
    prologue_inputs: int = 0
    # the kernel stores each output element once, after reading its epilogue operands there
    stores_once: bool = False
    # the input whose bytes the output takes over (it dies here)
    inplace_operand: int | None = None
    # the inputs (of a Concat) computed straight into their slice of the output
    inplace_inputs: list[int] = field(default_factory=list)
    # a LayerNormalization over the output's last axis, fused after the epilogue (the CUDA
    # target's fuse_layernorm: the GEMM's last block of each row-block normalizes its rows):
    # the node it came from, its scale (and bias) input positions, its epsilon
    norm_from: str = ""
    norm_inputs: list[int] = field(default_factory=list)
    norm_epsilon: float | None = None

    @property
    def kernel_name(self) -> str:
        return self.kernel.candidate if self.kernel is not None else ""
