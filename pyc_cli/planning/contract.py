"""Optimisation contracts (issue #16, point 3): what a build promises, checked at build time where
the plan decides it and again at run time where only a measurement can tell.

    pyc build model.onnx --contract arena<=16MiB,deterministic,max_rel_err<=1e-4,latency_p95<=8ms
    pyc run model.pyc --random-inputs 0 --check-contract

Clauses (comma-separated; each at most once):
- `arena<=SIZE` (B, KB, KiB, MB, MiB, GB, GiB): the activation arena, known from the plan at
  build time (and read back from the manifest at run time);
- `deterministic`: the build replays its policy's decisions and refuses it if they differ
  (PYC-E061); at run time two runs on the same inputs must give the same output bytes;
- `max_rel_err<=X`: per float output, max |output - reference| / max |reference| (the
  infinity-norm relative error, so elements near zero do not dominate) against the true value:
  the source model evaluated in float64 (compare/reference64.py; onnxruntime's float32 error is
  reported beside it); measured at run time only;
- `latency_pNN<=TIME` (p50, p90, p95, p99; us, ms, s): the NN-th percentile of timed runs;
  measured at run time (no build-time prediction exists yet: the what-if simulator of #16).
A malformed contract is PYC-E062; a broken clause PYC-E063, naming the clause, the value and the
decisions that drove it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import PycError
from ..units import format_size

_SIZES = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
          "gb": 1000**3, "gib": 1024**3}
_TIMES = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
LATENCY = re.compile(r"latency_p(50|90|95|99)")
CLAUSES = ("arena<=SIZE", "deterministic", "max_rel_err<=X", "latency_p50|p90|p95|p99<=TIME")
_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"


@dataclass(frozen=True)
class Clause:
    """One promise: `name` (arena, deterministic, max_rel_err, latency_pNN) and its limit in
    bytes, a ratio or seconds (None for deterministic)."""

    name: str
    limit: float | None
    text: str

    @property
    def percentile(self) -> int | None:
        match = LATENCY.fullmatch(self.name)
        return int(match.group(1)) if match else None

    def holds(self, value: float) -> bool:
        return self.limit is None or value <= self.limit

    def show(self, value: float) -> str:
        """`value` in the clause's unit, for messages."""
        if self.name == "arena":
            return f"{format_size(value)} ({int(value)} bytes)"
        if self.percentile is not None:
            return f"{value * 1e3:.4g} ms"
        return f"{value:.3g}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "text": self.text}


@dataclass(frozen=True)
class Contract:
    text: str
    clauses: tuple[Clause, ...]

    def get(self, name: str) -> Clause | None:
        return next((c for c in self.clauses if c.name == name), None)

    @property
    def latency(self) -> Clause | None:
        return next((c for c in self.clauses if c.percentile is not None), None)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "clauses": [c.to_json() for c in self.clauses]}


def parse_contract(text: str, where: str = "--contract") -> Contract:
    """The contract `text` means; PYC-E062 names a malformed clause and lists the known ones."""
    clauses: list[Clause] = []
    for part in [p.strip() for p in text.split(",")]:
        clause = _clause(part, where)
        if any(c.name == clause.name for c in clauses):
            raise _malformed(f"clause {clause.name!r} is given twice", where)
        clauses.append(clause)
    return Contract(text, tuple(clauses))


def _clause(part: str, where: str) -> Clause:
    if part == "deterministic":
        return Clause(part, None, part)
    name, sep, value = part.partition("<=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise _malformed(f"clause {part!r} is not NAME<=VALUE nor 'deterministic'", where)
    if name == "arena":
        limit = _quantity(value, _SIZES)
    elif name == "max_rel_err":
        limit = _quantity(value, {"": 1.0})
    elif LATENCY.fullmatch(name):
        limit = _quantity(value, _TIMES)
    else:
        raise _malformed(f"unknown clause {name!r}", where)
    if limit is None:
        raise _malformed(f"the value of clause {part!r} is not a number with a unit of "
                         f"{name}", where)
    return Clause(name, limit, part)


def _quantity(text: str, units: dict[str, float] | dict[str, int]) -> float | None:
    match = re.fullmatch(_NUMBER + r"\s*([A-Za-z]*)", text)
    if not match or match.group(2).lower() not in units:
        return None
    return float(match.group(1)) * units[match.group(2).lower()]


def _malformed(what: str, where: str) -> PycError:
    return PycError("E062", f"malformed contract: {what}", where=where,
                    hint=f"clauses, comma-separated: {', '.join(CLAUSES)} (e.g. "
                    "arena<=16MiB,deterministic,max_rel_err<=1e-4,latency_p95<=8ms)")


def broken(clause: Clause, value: float, when: str, drove: list[str]) -> PycError:
    """PYC-E063 for `clause` broken by `value` (`when`: predicted at build, measured at run)."""
    limit = "" if clause.limit is None else f" (limit {clause.show(clause.limit)})"
    return PycError("E063", f"contract clause {clause.text!r} is broken: {when} "
                    f"{clause.show(value)}{limit}",
                    where="decisions that drove it: " + "; ".join(drove) if drove else "",
                    hint=_hint(clause))


def _hint(clause: Clause) -> str:
    if clause.name == "arena":
        return ("build with --policy memory_first, or --memory-budget to pick the fastest mode "
                "that fits; `pyc explain` shows the arena of each mode")
    if clause.name == "max_rel_err":
        return "build with --no-winograd, or a higher precision; `pyc run --compare ort " \
               "--per-node` finds the first node that diverges"
    if clause.name == "deterministic":
        return "report it: a built-in policy must give the same outputs for the same inputs"
    return "build with --policy latency_first, more --threads, or --tune; `pyc run --profile` " \
           "shows the slowest kernels"
