"""Bounded symbolic dimensions (issue #15): integer expressions over named dims.

A `Dim` is a polynomial with integer coefficients over *atoms*: named dims (`batch`, `seq`),
each with the bounds the user gave (`--input-shape input_ids=batch:1..32,seq:1..512`), and
floor-divisions of a polynomial by a positive constant (a strided conv's output size). The
polynomial is kept in one canonical form (terms sorted, zero terms dropped, exact divisions
done), so two expressions of the same value built in any order compare and hash equal and
print the same text: the IR dump, the goldens and the artifact's bytes stay deterministic.

A `Dim` *is an int*: its integer value is its upper bound over the box of its named dims. Code
that knows nothing of symbolic dims therefore computes with upper bounds, which is right for
what it decides (sizes: an arena sized for the largest shape holds every shape) and wrong for
what a kernel bakes in, so a node whose shapes hold a `Dim` must run on a kernel that reads the
run-time sizes, or the build refuses it (naming the node). Comparisons for equality are
symbolic (`batch == seq` is False even when their bounds agree; `batch == 1` is False), order
comparisons (`<`, `>`) are the upper bounds'. Arithmetic with ints and Dims (`+`, `-`, `*`,
`//` by a constant, `ceil_div`, exact division by a monomial) gives a Dim, or an int where the
result is constant; what it cannot express raises SymbolicError (the shape rule turns it into a
PYC error naming the node).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NoReturn, Union

from ..errors import PycError

DimLike = Union[int, "Dim"]
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DimBounds:
    """A named dim and its inclusive range (`batch:1..32`). `computed` names the node that
    computes it at run time (a data-dependent size: issue #15, point 2); empty for the dims of
    the graph's inputs."""

    name: str
    lo: int
    hi: int
    computed: str = ""

    def key(self) -> tuple[int, str]:
        return (0, self.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class _Floor:
    """An atom: floor(num / den), num a Dim that does not divide exactly, den > 1."""

    num: Dim
    den: int

    def key(self) -> tuple[int, str]:
        return (1, f"{self.num}//{self.den}")

    def __str__(self) -> str:
        return f"({self.num})//{self.den}"


Atom = DimBounds | _Floor
Monomial = tuple[tuple[Atom, int], ...]  # (atom, power) pairs, sorted by atom key
Terms = tuple[tuple[Monomial, int], ...]


def _mono_key(mono: Monomial) -> tuple[tuple[tuple[int, str], int], ...]:
    return tuple((a.key(), p) for a, p in mono)


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    powers: dict[Atom, int] = dict(a)
    for atom, power in b:
        powers[atom] = powers.get(atom, 0) + power
    return tuple(sorted(((x, p) for x, p in powers.items() if p), key=lambda item: item[0].key()))


def _mono_str(mono: Monomial) -> str:
    return "*".join(str(a) if p == 1 else f"{a}^{p}" for a, p in mono)


def _canonical(coeffs: Mapping[Monomial, int]) -> Terms:
    items = [(m, c) for m, c in coeffs.items() if c]
    return tuple(sorted(items, key=lambda mc: (-len(mc[0]), _mono_key(mc[0]))))


def _terms(value: DimLike) -> Terms:
    if isinstance(value, Dim):
        return value.terms
    return ((((), int(value)),) if int(value) else ())


def _make(coeffs: Mapping[Monomial, int]) -> DimLike:
    """The canonical expression: an int where it has no atoms, else a Dim."""
    terms = _canonical(coeffs)
    if not terms:
        return 0
    if len(terms) == 1 and terms[0][0] == ():
        return terms[0][1]
    return Dim(terms)


class Dim(int):
    """A symbolic dim (see the module's docstring); `terms` is its canonical polynomial: pairs of
    monomial (the constant term: ()) and non-zero coefficient. Build one with `Dim.var` or
    arithmetic, never from terms that reduce to a constant (`_make` returns an int for those)."""

    terms: Terms

    def __new__(cls, terms: Terms) -> Dim:
        self = super().__new__(cls, _upper(terms))
        self.terms = terms
        return self

    @staticmethod
    def var(bounds: DimBounds) -> Dim:
        if not NAME.fullmatch(bounds.name):
            raise ValueError(f"not a dim name: {bounds.name!r}")
        mono: Monomial = ((bounds, 1),)
        return Dim(((mono, 1),))

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int):
            return NotImplemented
        coeffs = dict(self.terms)
        for mono, c in _terms(other):
            coeffs[mono] = coeffs.get(mono, 0) + c
        return _make(coeffs)

    __radd__ = __add__

    def __neg__(self) -> DimLike:  # type: ignore[override]
        return _make({m: -c for m, c in self.terms})

    def __sub__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int):
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int):
            return NotImplemented
        return (-self) + other

    def __mul__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int):
            return NotImplemented
        coeffs: dict[Monomial, int] = {}
        for ma, ca in self.terms:
            for mb, cb in _terms(other):
                mono = _mono_mul(ma, mb)
                coeffs[mono] = coeffs.get(mono, 0) + ca * cb
        return _make(coeffs)

    __rmul__ = __mul__

    def __floordiv__(self, other: object) -> DimLike:  # type: ignore[override]
        if isinstance(other, Dim):
            exact = exact_div(self, other)
            if exact is None:
                raise SymbolicError(f"({self}) // ({other}) is not a polynomial")
            return exact
        if not isinstance(other, int):
            return NotImplemented
        return floor_div(self, other)

    def __rfloordiv__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int):
            return NotImplemented
        exact = exact_div(other, self)
        if exact is None:
            raise SymbolicError(f"{other} // ({self}) is not a polynomial")
        return exact

    def __mod__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int) or isinstance(other, Dim):
            return NotImplemented
        rest = self - floor_div(self, other) * other
        return rest

    def __rmod__(self, other: object) -> NoReturn:  # type: ignore[override]
        raise SymbolicError(f"{other} % ({self}) is not a polynomial")

    def __truediv__(self, other: object) -> NoReturn:  # type: ignore[override]
        raise SymbolicError(f"({self}) / {other}: symbolic dims divide with // only")

    def __rtruediv__(self, other: object) -> NoReturn:  # type: ignore[override]
        raise SymbolicError(f"{other} / ({self}): symbolic dims divide with // only")

    def __pow__(self, other: object) -> DimLike:  # type: ignore[override]
        if not isinstance(other, int) or isinstance(other, Dim) or other < 0:
            return NotImplemented
        out: DimLike = 1
        for _ in range(other):
            out = self * out
        return out

    # ------------------------------------------------------------------ identity

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dim) and other.terms == self.terms

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.terms)

    def __str__(self) -> str:
        out = ""
        for i, (mono, c) in enumerate(self.terms):
            text = str(abs(c)) if not mono else (
                _mono_str(mono) if abs(c) == 1 else f"{abs(c)}*{_mono_str(mono)}")
            sign = "-" if c < 0 else "+"
            out += (("-" if c < 0 else "") if i == 0 else f" {sign} ") + text
        return out

    def __repr__(self) -> str:
        return f"Dim({self})"

    def __reduce__(self) -> tuple[type, tuple[Terms]]:  # type: ignore[override]
        return (Dim, (self.terms,))

    # ------------------------------------------------------------------ values

    def dims(self) -> dict[str, DimBounds]:
        """The named dims the expression reads (inside floor-divisions too), by name."""
        found: dict[str, DimBounds] = {}
        for mono, _ in self.terms:
            for atom, _ in mono:
                if isinstance(atom, DimBounds):
                    found[atom.name] = atom
                else:
                    found.update(atom.num.dims())
        return found

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, c in self.terms:
            value = c
            for atom, p in mono:
                base = env[atom.name] if isinstance(atom, DimBounds) \
                    else atom.num.evaluate(env) // atom.den
                value *= base ** p
            total += value
        return total

    def bounds(self) -> tuple[int, int]:
        """Inclusive bounds over every assignment of its named dims within their bounds
        (interval arithmetic: exact for the sums and products of positive dims that shapes
        are made of, safe otherwise)."""
        return _bounds(self.terms)

    def to_c(self, names: Mapping[str, str]) -> str:
        """A C expression of int64_t values, each named dim read as `names[dim]`."""
        parts = []
        for mono, c in self.terms:
            factors = [_atom_c(a, names) for a, p in mono for _ in range(p)]
            if c != 1 or not factors:
                factors.insert(0, f"(int64_t){c}" if not factors else str(c))
            parts.append("*".join(factors))
        return "(" + " + ".join(parts).replace("+ -", "- ") + ")"


class SymbolicError(ValueError):
    """An operation symbolic dims cannot express (the shape rule turns it into a PYC error
    naming its node)."""


def _bounds(terms: Terms) -> tuple[int, int]:
    lo_total = hi_total = 0
    for mono, c in terms:
        lo, hi = 1, 1
        for atom, p in mono:
            lo, hi = _interval_mul((lo, hi), _interval_pow(_atom_bounds(atom), p))
        lo, hi = sorted((lo * c, hi * c))
        lo_total += lo
        hi_total += hi
    return lo_total, hi_total


def _upper(terms: Terms) -> int:
    return _bounds(terms)[1]


def exact_div(value: DimLike, divisor: DimLike) -> DimLike | None:
    """value / divisor where it divides exactly term by term (divisor: a constant or one
    monomial, or value itself), else None."""
    dterms = _terms(divisor)
    if len(dterms) != 1:
        return 1 if dterms and _terms(value) == dterms else None
    (dmono, dcoeff), = dterms
    powers = dict(dmono)
    coeffs: dict[Monomial, int] = {}
    for mono, c in _terms(value):
        left = dict(mono)
        for atom, p in powers.items():
            if left.get(atom, 0) < p:
                return None
            left[atom] -= p
        if c % dcoeff:
            return None
        key = tuple(sorted(((a, q) for a, q in left.items() if q), key=lambda item: item[0].key()))
        coeffs[key] = c // dcoeff
    return _make(coeffs)


def floor_div(value: DimLike, den: int) -> DimLike:
    """value // den (den > 0), exact where every coefficient divides."""
    if isinstance(den, Dim) or den <= 0:
        raise SymbolicError(f"division by {den}")
    if not isinstance(value, Dim):
        return int(value) // den
    exact = exact_div(value, den)
    if exact is not None:
        return exact
    # pull out the terms that divide exactly: (den*x + r) // den == x + r // den
    whole = _make({m: c // den for m, c in value.terms})
    rest = _make({m: c % den for m, c in value.terms})
    if not isinstance(rest, Dim):
        return whole + rest // den
    mono: Monomial = ((_Floor(rest, den), 1),)
    return whole + Dim(((mono, 1),))


def ceil_div(value: DimLike, den: int) -> DimLike:
    """ceil(value / den) (den > 0)."""
    return floor_div(value + (den - 1), den)


def computed_dim(node_name: str, axis: int, hi: int) -> Dim:
    """A fresh dim in 0..hi that node `node_name` computes at run time (output axis `axis`):
    named after the node and the axis, so every re-inference of the node gives the same dim."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", node_name).strip("_") or "node"
    suffix = "" if base == node_name else f"_{zlib.crc32(node_name.encode()):08x}"
    return Dim.var(DimBounds(f"rt_{base}{suffix}_{axis}", 0, int(hi), node_name))


# DimBounds.computed of a value dim: what the entry point reads it from (input, element)
VALUE_SOURCE = re.compile(r"input (.+)\[(\d+)\]")


def value_dim(input_name: str, index: int, lo: int, hi: int) -> Dim:
    """Element `index` of integer graph input `input_name`, whose values are declared to lie in
    lo..hi (`--input-values`), as a dim (issue #15, point 2: a *value dim*): the entry point
    reads it from the input's data at run time, so sizes computed from the same element by
    different nodes are the same dim."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", input_name).strip("_") or "input"
    suffix = "" if base == input_name else f"_{zlib.crc32(input_name.encode()):08x}"
    return Dim.var(DimBounds(f"val_{base}{suffix}_{index}", lo, hi, f"input {input_name}[{index}]"))


def value_source(bounds: DimBounds) -> tuple[str, int] | None:
    """(input, element) a value dim is read from; None for other dims."""
    found = VALUE_SOURCE.fullmatch(bounds.computed)
    return (found.group(1), int(found.group(2))) if found else None


@dataclass(frozen=True)
class EntryStep:
    """What the entry point computes or checks after reading the value dims, before any kernel
    runs (issue #15, point 2), for the shape rule of node `node`: kind "dim" sets entry dim
    `dim` to left // right (which must divide exactly); "equal" checks left == right (a
    Reshape's element counts); "broadcast" checks that left is 1 or right (an operand's or an
    Expand target's dim that may be 1 at run time against the broadcast output's); "bcast"
    sets entry dim `dim` to the broadcast of left and right (equal, or one of them 1: the
    other; a broadcast output dim whose winning side depends on the sizes). `guard`: the run
    condition (ir/guards.py) of the node inside a run-time If branch, whose checks run only
    where the run takes that branch (None: always). A run breaking one returns status 6
    (PYC-E041)."""

    kind: str
    node: str
    left: DimLike
    right: DimLike
    dim: str = ""
    guard: frozenset[frozenset[tuple[str, bool]]] | None = None


# DimBounds.computed of an entry dim: the node whose rule decided it
ENTRY_SOURCE = re.compile(r"entry (.+)")


def entry_dim(node_name: str, axis: int, lo: int, hi: int) -> Dim:
    """A dim the entry point computes before any kernel runs, from the input dims and value
    dims (issue #15, point 2: the -1 of a Reshape whose target is computed from input values,
    numel // the product of the other target dims); named like `computed_dim`, so every
    re-inference of the node gives the same dim."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", node_name).strip("_") or "node"
    suffix = "" if base == node_name else f"_{zlib.crc32(node_name.encode()):08x}"
    return Dim.var(DimBounds(f"rt_{base}{suffix}_{axis}", max(0, int(lo)), int(hi),
                             f"entry {node_name}"))


def entry_source(bounds: DimBounds) -> str | None:
    """The node an entry dim (see `entry_dim`) belongs to; None for other dims."""
    found = ENTRY_SOURCE.fullmatch(bounds.computed)
    return found.group(1) if found else None


def may_be_one(value: DimLike) -> bool:
    """Whether `value` may be 1 at run time (a number: whether it is 1)."""
    if not isinstance(value, Dim):
        return int(value) == 1
    lo, hi = sign_bounds(value)
    return lo <= 1 <= hi


def stretched_at_run_time(shape: tuple[DimLike, ...], out: tuple[DimLike, ...]) -> bool:
    """Whether an operand of `shape`, broadcast to `out`, has a symbolic dim other than the
    output's (it may be 1 at run time where the output's is larger: its stride is then 0, a
    run-time stride; see ops/elementwise.py `broadcast_at_entry`)."""
    return any(isinstance(d, Dim) and d != o for d, o in zip(reversed(shape), reversed(out)))


@dataclass(frozen=True)
class RunTimeStride:
    """The stride of an operand axis whose symbolic size `size` may be 1 at run time where the
    output's is larger (ops/elementwise.py `broadcast_at_entry`, checked at entry to be 1 or
    the output's): `stride` where the size is not 1, 0 where it is (the operand broadcasts)."""

    size: Dim
    stride: DimLike

    def to_c(self, names: Mapping[str, str]) -> str:
        stride = self.stride.to_c(names) if isinstance(self.stride, Dim) else str(int(self.stride))
        return f"({self.size.to_c(names)} == 1 ? 0 : {stride})"

    def __str__(self) -> str:
        return f"({self.size} == 1 ? 0 : {self.stride})"


def from_values(value: object) -> bool:
    """Whether `value` is a dim computed from input values: it reads a value dim or an entry
    dim (issue #15, point 2)."""
    return isinstance(value, Dim) and any(
        value_source(b) is not None or entry_source(b) is not None for b in value.dims().values())


def known_at_entry(values: Iterable[DimLike]) -> bool:
    """Whether the entry point knows every dim of `values` before the first kernel runs: input
    dims, value dims (read from input data) and entry dims, not the dims kernels compute."""
    for value in values:
        if isinstance(value, Dim):
            for bounds in value.dims().values():
                if bounds.computed and value_source(bounds) is None and \
                        entry_source(bounds) is None:
                    return False
    return True


def bare_value_dim(value: object) -> DimBounds | None:
    """The bounds of `value` where it is one value dim itself (not an expression of it)."""
    if not isinstance(value, Dim) or len(value.terms) != 1:
        return None
    (mono, coeff), = value.terms
    if coeff != 1 or len(mono) != 1 or mono[0][1] != 1 or not isinstance(mono[0][0], DimBounds):
        return None
    bounds = mono[0][0]
    return bounds if value_source(bounds) is not None else None


def computed_dims(shapes: Iterable[tuple[DimLike, ...]]) -> dict[str, DimBounds]:
    """The computed dims (see `computed_dim`) that `shapes` read, by name."""
    found: dict[str, DimBounds] = {}
    for shape in shapes:
        for dim in shape:
            if isinstance(dim, Dim):
                found.update({k: b for k, b in dim.dims().items() if b.computed})
    return found


def sign_bounds(value: DimLike, depth: int = 4) -> tuple[int, int]:
    """Bounds of a positive multiple of `value` (its sign is theirs), tighter than
    `Dim.bounds` where a floor-division cancels against its own numerator: interval
    arithmetic treats `seq` and `seq//2` as independent, so `seq + 1 - seq//2` looks as if
    it could be negative. A floor atom F = (N - r)/d with r in 0..d-1 that appears only
    linearly (value = A + c*F, c a number) gives d*value = d*A + c*N - c*r, whose bounds
    see the cancellation; up to `depth` atoms are eliminated this way."""
    if not isinstance(value, Dim):
        return int(value), int(value)
    floor = next((atom for mono, _ in value.terms for atom, _ in mono
                  if isinstance(atom, _Floor)), None)
    if floor is None or depth == 0:
        return value.bounds()
    coeff = dict(value.terms).get(((floor, 1),))
    if coeff is None or any(floor in dict(mono) and mono != ((floor, 1),)
                            for mono, _ in value.terms):
        return value.bounds()  # F appears in a product or a power: no linear elimination
    atom_dim = Dim(((((floor, 1),), 1),))
    rest = value - coeff * atom_dim
    lo, hi = sign_bounds(floor.den * rest + coeff * floor.num, depth - 1)
    slack = -coeff * (floor.den - 1)  # -c*r for r in 0..d-1
    return lo + min(0, slack), hi + max(0, slack)


def less(a: DimLike, b: DimLike) -> bool:
    """a < b where the dims' bounds decide it (always, for plain ints); SymbolicError where
    it depends on the dims' values. Python's `<` on a Dim compares upper bounds only, which is
    wrong for a rule that picks a shape (a Slice end clamped to a dim)."""
    diff = a - b
    if not isinstance(diff, Dim):
        return int(diff) < 0
    lo, hi = sign_bounds(diff)
    if hi < 0:
        return True
    if lo >= 0:
        return False
    raise SymbolicError(f"whether {a} < {b} depends on the dims' values")


def surely_less(a: DimLike, b: DimLike) -> bool:
    """a < b for every value of the dims (False where the bounds do not decide it): for
    validity checks, whose failure is an error and whose doubt is not."""
    try:
        return less(a, b)
    except SymbolicError:
        return False


def smin(a: DimLike, b: DimLike) -> DimLike:
    """min(a, b) where the bounds decide it, else SymbolicError (see `less`)."""
    return b if less(b, a) else a


def smax(a: DimLike, b: DimLike) -> DimLike:
    """max(a, b) where the bounds decide it, else SymbolicError (see `less`)."""
    return b if less(a, b) else a


def has_dims(values: Iterable[object]) -> bool:
    """Whether any of `values` (a shape's dims, a shape tensor's elements) is symbolic."""
    return any(isinstance(v, Dim) for v in values)


_DIM_TOKEN = re.compile(r"\s*(\d+|[A-Za-z_][A-Za-z0-9_]*|//|[-+*^()])")


def parse_dim(text: str, bounds: Mapping[str, DimBounds]) -> DimLike:
    """The inverse of str(Dim) (the IR text prints symbolic dims so): sums and differences
    of products of integers, named dims (bounded by `bounds`), powers (`seq^2`) and
    floor-divisions `(expr)//N`. ValueError on anything else or on an unbounded name."""
    tokens = _DIM_TOKEN.findall(text)
    if "".join(tokens) != text.replace(" ", ""):
        raise ValueError(f"not a symbolic dim: {text!r}")
    pos = 0

    def peek() -> str:
        return tokens[pos] if pos < len(tokens) else ""

    def take(expect: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if not token or (expect is not None and token != expect):
            raise ValueError(f"not a symbolic dim: {text!r}")
        pos += 1
        return token

    def atom() -> DimLike:
        token = take()
        if token.isdigit():
            return int(token)
        if token == "(":
            inner = expr()
            take(")")
            take("//")
            return floor_div(inner, int(take()))
        if token not in bounds:
            raise ValueError(f"symbolic dim {token!r} has no bounds")
        return Dim.var(bounds[token])

    def factor() -> DimLike:
        base = atom()
        if peek() == "^":
            take()
            return base ** int(take())  # type: ignore[no-any-return]
        return base

    def term() -> DimLike:
        value = factor()
        while peek() == "*":
            take()
            value = value * factor()
        return value

    def expr() -> DimLike:
        value = -term() if peek() == "-" and take() else term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    result = expr()
    if pos != len(tokens):
        raise ValueError(f"not a symbolic dim: {text!r}")
    return result


# the hint of every PYC-E051 (a node or pass that cannot take symbolic dims yet)
NUMBERS_HINT = "give the dims numbers (--input-shape NAME=d0,d1,...)"


def _atom_bounds(atom: Atom) -> tuple[int, int]:
    if isinstance(atom, DimBounds):
        return atom.lo, atom.hi
    lo, hi = atom.num.bounds()
    return lo // atom.den, hi // atom.den


def _atom_c(atom: Atom, names: Mapping[str, str]) -> str:
    if isinstance(atom, DimBounds):
        return names[atom.name]
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


BOUNDED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::([0-9]+)\.\.([0-9]+)(?:/([0-9]+))?)?")


def parse_input_shapes(texts: tuple[str, ...] | list[str]
                       ) -> tuple[dict[str, tuple[DimLike, ...]], dict[str, DimBounds]]:
    """Every `--input-shape` at once: each input's dims and the named dims' bounds. A named
    dim is bounded once (`seq:1..512`) and may be reused bare (`seq`) by any input; a bare
    number stays static. Malformed text, a name never bounded, bounds given twice with other
    values, or lo > hi: PYC-E006 naming the argument."""
    raw: dict[str, tuple[int | str, ...]] = {}
    bounds: dict[str, DimBounds] = {}
    steps: dict[str, int] = {}  # a dim's step (NAME:LO..HI/STEP), 1 without one
    pending: list[tuple[str, str]] = []  # (argument, dim name) used before its bounds
    for text in texts:
        name, sep, body = text.rpartition("=")
        if not sep or not name:
            _malformed(text)
        dims: list[int | str] = []
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
            dim_name, lo, hi, step = match.group(1), match.group(2), match.group(3), match.group(4)
            if lo is not None:
                # NAME:LO..HI/STEP: sizes that are multiples of STEP, i.e. STEP*NAME with NAME
                # in LO/STEP..HI/STEP (the canonical form then simplifies (32*h + 1)//2 to 16*h)
                every = _step(int(step) if step is not None else 1, int(lo), int(hi), text)
                if steps.setdefault(dim_name, every) != every:
                    raise PycError("E006", f"dim {dim_name!r} is given two steps", where=text,
                                   hint=f"bound it once and reuse it bare ({dim_name})")
                _add_bounds(bounds, DimBounds(dim_name, int(lo) // every, int(hi) // every), text)
            pending.append((text, dim_name))
            dims.append(dim_name)
        if name in raw:
            raise PycError("E006", f"--input-shape gives input {name!r} twice", where=text,
                           hint="give each input one --input-shape")
        raw[name] = tuple(dims)
    for text, dim_name in pending:
        if dim_name not in bounds:
            raise PycError("E006", f"dim {dim_name!r} has no bounds", where=f"--input-shape {text}",
                           hint=f"bound it once, e.g. {dim_name}:1..512, in any --input-shape")
    return {name: tuple(steps.get(d, 1) * Dim.var(bounds[d]) if isinstance(d, str) else d
                        for d in dims)
            for name, dims in raw.items()}, bounds


def _step(step: int, lo: int, hi: int, text: str) -> int:
    """A dim's step: positive, and dividing both bounds."""
    if step < 1 or lo % step or hi % step:
        raise PycError("E006", f"the bounds {lo}..{hi} are not multiples of the step {step}",
                       where=f"--input-shape {text}",
                       hint="write NAME:LO..HI/STEP with LO and HI multiples of STEP, e.g. "
                       "h:32..960/32")
    return step


def input_dim_step(dim: Dim) -> tuple[DimBounds, int]:
    """An input axis's named dim and step: `STEP*NAME` (from NAME:LO..HI/STEP) or NAME (step
    1). ValueError on any other expression (--input-shape binds names, not sums)."""
    ((_, bounds),) = dim.dims().items()
    for step in range(1, int(dim) // max(1, bounds.hi) + 1):
        if dim == step * Dim.var(bounds):
            return bounds, step
    raise ValueError(f"an input dim is an expression ({dim}), not a named dim")


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
                   hint="each dim a positive integer, a bounded name (seq:1..512, or "
                   "h:32..960/32 for multiples of 32) or a name bounded elsewhere (seq); e.g. "
                   "--input-shape input_ids=batch:1..8,seq:1..512")


def check_within(input_name: str, dims: tuple[DimLike, ...], actual: tuple[int, ...],
                 env: dict[str, int]) -> None:
    """Bind the named dims of one input to an actual shape (into `env`), or PYC-E041 naming
    the input, the dim and the bounds."""
    if len(actual) != len(dims):
        raise PycError("E041", f"input {input_name!r} has rank {len(actual)}, the model takes "
                       f"rank {len(dims)}", hint=f"give a shape like {_shape_text(dims)}")
    for axis, (dim, size) in enumerate(zip(dims, actual)):
        if not isinstance(dim, Dim):
            if size != dim:
                raise PycError("E041", f"input {input_name!r} dim {axis} is {size}; the model "
                               f"was built for {dim}", hint=f"give a shape like {_shape_text(dims)}")
            continue
        b, step = input_dim_step(dim)
        dim_name = b.name
        if step != 1:  # the axis is step * the dim
            if size % step:
                raise PycError("E041", f"input {input_name!r} dim {axis} ({dim}) is {size}, not "
                               f"a multiple of {step}",
                               hint=f"send sizes that are multiples of {step} "
                               f"({b.lo * step}..{b.hi * step})")
            size //= step
        if not b.lo <= size <= b.hi:
            shown = size * step
            raise PycError("E041", f"input {input_name!r} dim {axis} ({dim}) is {shown}, "
                           f"outside its bounds {b.lo * step}..{b.hi * step}",
                           hint="rebuild with wider bounds (--input-shape) or send a shape inside them")
        if env.setdefault(dim_name, size) != size:
            raise PycError("E041", f"input {input_name!r} dim {axis} ({dim}) is {size * step}, but "
                           f"another input gave {dim_name} = {env[dim_name]}",
                           hint=f"inputs sharing {dim_name} must agree on it")


def _shape_text(dims: tuple[DimLike, ...]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def numel(dims: tuple[DimLike, ...]) -> DimLike:
    return math.prod(dims, start=1)  # type: ignore[arg-type]
