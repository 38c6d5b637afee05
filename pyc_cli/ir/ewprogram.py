"""Scalar programs: the body of a fused elementwise loop or of a kernel epilogue.

A program is a list of SSA instructions evaluated once per output element, e.g.

    t0:f32=Mul(in0,#0.5)
    t1:f32=Erf(t1)
    t2:f32=Add(t1,in1)

Operands: `inK` (the K-th tensor operand, read through broadcast strides), `acc` (the anchor
kernel's accumulator, in epilogues only), `tK` (earlier results) and `#<dtype>:<number>` (inlined
scalar literals, printed exactly). The last instruction's result is the program's result. Programs are
stored in node attributes as lists of these strings, so they print and parse with the IR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .types import DType

_INSTR = re.compile(r"^(?P<dst>t\d+):(?P<dtype>\w+)=(?P<op>\w+)\((?P<args>[^;)]*)(?:;(?P<attrs>.*))?\)$")


@dataclass(frozen=True)
class Instr:
    dst: str
    dtype: DType
    op: str
    args: tuple[str, ...]
    attrs: dict[str, float | int | str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.dst}:{self.dtype.value}={self.op}({','.join(self.args)}"
        if self.attrs:
            text += ";" + json.dumps(self.attrs, sort_keys=True, separators=(",", ":"))
        return text + ")"

    @classmethod
    def parse(cls, text: str) -> Instr:
        match = _INSTR.match(text)
        if not match:
            raise ValueError(f"bad program instruction {text!r}")
        args = tuple(a for a in match["args"].split(",") if a)
        attrs = json.loads(match["attrs"]) if match["attrs"] else {}
        return cls(match["dst"], DType(match["dtype"]), match["op"], args, attrs)


def literal(value: float | int, dtype: DType) -> str:
    """An inlined scalar, typed so that C never promotes float math to double: `#f32:0.5`."""
    number = float(value) if dtype.is_float else int(value)
    return f"#{dtype.value}:{number!r}"


def is_literal(arg: str) -> bool:
    return arg.startswith("#")


def literal_parts(arg: str) -> tuple[DType, float | int]:
    dtype_name, text = arg[1:].split(":", 1)
    dtype = DType(dtype_name)
    return dtype, (float(text) if dtype.is_float else int(text))


def tensor_operand(arg: str) -> int | None:
    """Index K of an `inK` operand, else None."""
    return int(arg[2:]) if arg.startswith("in") else None


def parse_program(lines: list[str]) -> list[Instr]:
    return [Instr.parse(line) for line in lines]


def format_program(program: list[Instr]) -> list[str]:
    return [str(instr) for instr in program]


def renumber(program: list[Instr], arg_map: dict[str, str], first_temp: int) -> list[Instr]:
    """Rename operands by `arg_map` and temps from `first_temp` on (used when splicing programs)."""
    mapping = dict(arg_map)
    out: list[Instr] = []
    for index, instr in enumerate(program):
        dst = f"t{first_temp + index}"
        args = tuple(mapping.get(a, a) for a in instr.args)
        mapping[instr.dst] = dst
        out.append(Instr(dst, instr.dtype, instr.op, args, dict(instr.attrs)))
    return out
