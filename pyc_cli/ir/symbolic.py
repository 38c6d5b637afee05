"""Bounded symbolic dimensions (issue #15): integer expressions over named dims.

A `Dim` is a polynomial with integer coefficients over *atoms*: named dims (`batch`, `seq`),
each with bounds given by the user (`--input-shape input_ids=batch:1..32,seq:1..512`), and
floor-divisions of a polynomial by a positive constant (a strided conv's output size). The
polynomial is kept in one canonical form (terms sorted, zero terms dropped, exact divisions
done), so two expressions of the same value built in any order compare and hash equal and
print the same text: the IR dump, the goldens and the artifact's bytes stay deterministic.

Shape rules do arithmetic on `Dim` and `int` alike (`+`, `-`, `*`, `//`, `ceil_div`,
`exact_div`); what a static shape would decide by comparing numbers, a symbolic one decides
from the bounds (`bounds`) or refuses (the caller raises a PYC error naming the node).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn, Union

from ..errors import PycError

DimLike = Union[int, "Dim"]
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DimBounds:
    """A named dim's inclusive range (`batch:1..32`)."""

    name: str
    lo: int
    hi: int

    def __str__(self) -> str:
        return f"{self.name}:{self.lo}..{self.hi}"


@dataclass(frozen=True)
class _Floor:
    """An atom: floor(num / den), num a Dim that does not divide exactly, den > 1."""

    num: Dim
    den: int

    def key(self) -> tuple[int, str]:
        return (1, f"{self.num}//{self.den}")

    def __str__(self) -> str:
        return f"({self.num})//{self.den}"


Atom = str | _Floor
Monomial = tuple[tuple[Atom, int], ...]  # (atom, power) pairs, sorted by atom


def _atom_key(atom: Atom) -> tuple[int, str]:
    return (0, atom) if isinstance(atom, str) else atom.key()


def _mono_key(mono: Monomial) -> tuple[tuple[tuple[int, str], int], ...]:
    return tuple((_atom_key(a), p) for a, p in mono)


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    powers: dict[Atom, int] = dict(a)
    for atom, power in b:
        powers[atom] = powers.get(atom, 0) + power
    return tuple(sorted(powers.items(), key=lambda item: _atom_key(item[0])))


def _mono_str(mono: Monomial) -> str:
    return "*".join(str(a) if p == 1 else f"{a}^{p}" for a, p in mono)


@dataclass(frozen=True)
class Dim:
    """A canonical polynomial: `terms` maps monomials (the constant term: ()) to non-zero
    integer coefficients, sorted. Build one with `Dim.var` or arithmetic; `simplify` returns a
    plain int where the expression is constant."""

    terms: tuple[tuple[Monomial, int], ...]

    # ------------------------------------------------------------------ building

    @staticmethod
    def var(name: str) -> Dim:
        if not NAME.fullmatch(name):
            raise ValueError(f"not a dim name: {name!r}")
        mono: Monomial = ((name, 1),)
        return Dim(((mono, 1),))

    @staticmethod
    def const(value: int) -> Dim:
        return Dim((((), value),) if value else ())

    @staticmethod
    def _of(coeffs: Mapping[Monomial, int]) -> Dim:
        items = [(m, c) for m, c in coeffs.items() if c]
        return Dim(tuple(sorted(items, key=lambda mc: (len(mc[0]), _mono_key(mc[0])))))

    @staticmethod
    def lift(value: DimLike) -> Dim:
        return value if isinstance(value, Dim) else Dim.const(int(value))

    def simplify(self) -> DimLike:
        """An int where the expression has no atoms, else itself."""
        if not self.terms:
            return 0
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return self

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: DimLike) -> DimLike:
        coeffs = dict(self.terms)
        for mono, c in Dim.lift(other).terms:
            coeffs[mono] = coeffs.get(mono, 0) + c
        return Dim._of(coeffs).simplify()

    __radd__ = __add__

    def __neg__(self) -> DimLike:
        return Dim._of({m: -c for m, c in self.terms}).simplify()

    def __sub__(self, other: DimLike) -> DimLike:
        return self + (-Dim.lift(other))

    def __rsub__(self, other: DimLike) -> DimLike:
        return Dim.lift(other) + (-self)

    def __mul__(self, other: DimLike) -> DimLike:
        coeffs: dict[Monomial, int] = {}
        for ma, ca in self.terms:
            for mb, cb in Dim.lift(other).terms:
                mono = _mono_mul(ma, mb)
                coeffs[mono] = coeffs.get(mono, 0) + ca * cb
        return Dim._of(coeffs).simplify()

    __rmul__ = __mul__

    def __floordiv__(self, other: DimLike) -> DimLike:
        if isinstance(other, Dim):
            exact = self.exact_div(other)
            if exact is None:
                raise SymbolicError(f"({self}) // ({other}) is not a polynomial")
            return exact
        return floor_div(self, other)

    def exact_div(self, other: DimLike) -> DimLike | None:
        """self / other where it divides exactly term by term (other: a constant or one
        monomial), else None."""
        divisor = Dim.lift(other)
        if len(divisor.terms) != 1:
            return None if divisor != self else 1
        (dmono, dcoeff), = divisor.terms
        powers = dict(dmono)
        coeffs: dict[Monomial, int] = {}
        for mono, c in self.terms:
            left = dict(mono)
            for atom, p in powers.items():
                if left.get(atom, 0) < p:
                    return None
                left[atom] -= p
            if c % dcoeff:
                return None
            key = tuple(sorted(((a, p) for a, p in left.items() if p),
                               key=lambda item: _atom_key(item[0])))
            coeffs[key] = c // dcoeff
        return Dim._of(coeffs).simplify()

    # ------------------------------------------------------------------ values

    def atoms(self) -> set[str]:
        """The named dims the expression reads (inside floor-divisions too)."""
        names: set[str] = set()
        for mono, _ in self.terms:
            for atom, _ in mono:
                names |= {atom} if isinstance(atom, str) else atom.num.atoms()
        return names

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, c in self.terms:
            value = c
            for atom, p in mono:
                base = env[atom] if isinstance(atom, str) else atom.num.evaluate(env) // atom.den
                value *= base ** p
            total += value
        return total

    def bounds(self, dims: Mapping[str, DimBounds]) -> tuple[int, int]:
        """Inclusive bounds over every assignment within `dims` (interval arithmetic: exact
        for the sums and products of non-negative dims that shapes are made of, safe
        otherwise)."""
        lo_total = hi_total = 0
        for mono, c in self.terms:
            lo, hi = 1, 1
            for atom, p in mono:
                alo, ahi = _atom_bounds(atom, dims)
                lo, hi = _interval_mul((lo, hi), _interval_pow((alo, ahi), p))
            lo, hi = sorted((lo * c, hi * c))
            lo_total += lo
            hi_total += hi
        return lo_total, hi_total

    def to_c(self, names: Mapping[str, str]) -> str:
        """A C expression of int64_t values, each named dim read as `names[dim]`."""
        parts = []
        for mono, c in self.terms:
            factors = [_atom_c(a, names) for a, p in mono for _ in range(p)]
            if c != 1 or not factors:
                factors.insert(0, f"(int64_t){c}" if not factors else str(c))
            parts.append("*".join(factors))
        return "(" + " + ".join(parts).replace("+ -", "- ") + ")"

    def __str__(self) -> str:
        out = ""
        for i, (mono, c) in enumerate(self.terms):
            text = str(abs(c)) if not mono else (
                _mono_str(mono) if abs(c) == 1 else f"{abs(c)}*{_mono_str(mono)}")
            sign = "-" if c < 0 else "+"
            out += (("-" if c < 0 else "") if i == 0 else f" {sign} ") + text
        return out or "0"

    def __repr__(self) -> str:
        return f"Dim({self})"


class SymbolicError(ValueError):
    """An operation symbolic dims cannot express (the shape rule turns it into a PYC error
    naming its node)."""


def floor_div(value: DimLike, den: int) -> DimLike:
    """value // den (den > 0), exact where every coefficient divides."""
    if den <= 0:
        raise SymbolicError(f"division by {den}")
    if not isinstance(value, Dim):
        return value // den
    exact = value.exact_div(den)
    if exact is not None:
        return exact
    # pull out the terms that divide exactly: (den*x + r) // den == x + r // den
    whole = Dim._of({m: c // den for m, c in value.terms})
    rest = Dim._of({m: c % den for m, c in value.terms})
    rest_value = rest.simplify()
    if isinstance(rest_value, int):
        return whole + rest_value // den
    mono: Monomial = ((_Floor(rest, den), 1),)
    return whole + Dim(((mono, 1),))


def ceil_div(value: DimLike, den: int) -> DimLike:
    """ceil(value / den) (den > 0)."""
    return floor_div(value + (den - 1), den)


def is_static(value: DimLike) -> bool:
    return not isinstance(value, Dim)


def _atom_bounds(atom: Atom, dims: Mapping[str, DimBounds]) -> tuple[int, int]:
    if isinstance(atom, str):
        return dims[atom].lo, dims[atom].hi
    lo, hi = atom.num.bounds(dims)
    return lo // atom.den, hi // atom.den


def _atom_c(atom: Atom, names: Mapping[str, str]) -> str:
    if isinstance(atom, str):
        return names[atom]
    # C's / truncates toward zero; the numerators of shapes are non-negative
    return f"({atom.num.to_c(names)} / {atom.den})"


def _interval_mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    products = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(products), max(products)


def _interval_pow(a: tuple[int, int], p: int) -> tuple[int, int]:
    out = (1, 1)
    for _ in range(p):
        out = _interval_mul(out, a)
    return out


# ---------------------------------------------------------------------- --input-shape


@dataclass(frozen=True)
class InputShapeSpec:
    """One `--input-shape NAME=d0,d1,...` whose dims are numbers or named dims."""

    name: str
    dims: tuple[DimLike, ...]


BOUNDED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::([0-9]+)\.\.([0-9]+))?")


def parse_input_shapes(texts: tuple[str, ...] | list[str]
                       ) -> tuple[dict[str, tuple[DimLike, ...]], dict[str, DimBounds]]:
    """Every `--input-shape` at once: each input's dims and the named dims' bounds. A named
    dim is bounded once (`seq:1..512`) and may be reused bare (`seq`) by any input; a bare
    number stays static. Malformed text, a name never bounded, bounds given twice with other
    values, or lo > hi: PYC-E006 naming the argument."""
    shapes: dict[str, tuple[DimLike, ...]] = {}
    bounds: dict[str, DimBounds] = {}
    pending: list[tuple[str, str]] = []  # (argument, dim name) used before its bounds
    for text in texts:
        name, sep, body = text.rpartition("=")
        if not sep or not name:
            _malformed(text)
        dims: list[DimLike] = []
        for token in (body.split(",") if body.strip() else []):
            token = token.strip()
            if token.isdigit():
                if int(token) <= 0:
                    _malformed(text)
                dims.append(int(token))
                continue
            match = BOUNDED.fullmatch(token)
            if match is None:
                _malformed(text)
            dim_name, lo, hi = match.group(1), match.group(2), match.group(3)
            if lo is not None:
                _add_bounds(bounds, DimBounds(dim_name, int(lo), int(hi)), text)
            else:
                pending.append((text, dim_name))
            dims.append(Dim.var(dim_name))
        if name in shapes:
            raise PycError("E006", f"--input-shape gives input {name!r} twice", where=text,
                           hint="give each input one --input-shape")
        shapes[name] = tuple(dims)
    for text, dim_name in pending:
        if dim_name not in bounds:
            raise PycError("E006", f"dim {dim_name!r} has no bounds", where=f"--input-shape {text}",
                           hint=f"bound it once, e.g. {dim_name}:1..512, in any --input-shape")
    return shapes, bounds


def _add_bounds(bounds: dict[str, DimBounds], new: DimBounds, text: str) -> None:
    if new.lo < 1 or new.lo > new.hi:
        raise PycError("E006", f"bounds {new} are empty or start below 1",
                       where=f"--input-shape {text}", hint="write NAME:LO..HI with 1 <= LO <= HI")
    old = bounds.get(new.name)
    if old is not None and old != new:
        raise PycError("E006", f"dim {new.name!r} is bounded twice ({old} and {new})",
                       where=f"--input-shape {text}",
                       hint=f"bound it once and reuse it bare ({new.name})")
    bounds[new.name] = new


def _malformed(text: str) -> NoReturn:
    raise PycError("E006", f"--input-shape {text!r} is not NAME=d0,d1,...",
                   hint="each dim a positive integer, a bounded name (seq:1..512) or a name "
                   "bounded elsewhere (seq); e.g. --input-shape input_ids=batch:1..8,seq:1..512")


def check_within(input_name: str, dims: tuple[DimLike, ...], actual: tuple[int, ...],
                 bounds: Mapping[str, DimBounds], env: dict[str, int]) -> None:
    """Bind the named dims of one input to an actual shape (into `env`), or PYC-E041 naming
    the input, the dim and the bounds."""
    if len(actual) != len(dims):
        raise PycError("E041", f"input {input_name!r} has rank {len(actual)}, the model takes "
                       f"rank {len(dims)}", hint=f"give a shape like {_shape_text(dims)}")
    for axis, (dim, size) in enumerate(zip(dims, actual)):
        if isinstance(dim, int):
            if size != dim:
                raise PycError("E041", f"input {input_name!r} dim {axis} is {size}; the model "
                               f"was built for {dim}", hint=f"give a shape like {_shape_text(dims)}")
            continue
        (dim_name,) = dim.atoms()
        b = bounds[dim_name]
        if not b.lo <= size <= b.hi:
            raise PycError("E041", f"input {input_name!r} dim {axis} ({dim_name}) is {size}, "
                           f"outside its bounds {b.lo}..{b.hi}",
                           hint="rebuild with wider bounds (--input-shape) or send a shape inside them")
        if env.setdefault(dim_name, size) != size:
            raise PycError("E041", f"input {input_name!r} dim {axis} ({dim_name}) is {size}, but "
                           f"another input gave {dim_name} = {env[dim_name]}",
                           hint=f"inputs sharing {dim_name} must agree on it")


def _shape_text(dims: tuple[DimLike, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def numel(dims: tuple[DimLike, ...]) -> DimLike:
    return math.prod(dims, start=1)  # type: ignore[arg-type]
