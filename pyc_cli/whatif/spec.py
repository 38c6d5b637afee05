"""What a `--what-if` names: one alternative build, as KEY=VALUE pairs separated by commas.

    mode=memory_first            a built-in policy (or a registered plugin policy)
    threads=2                    a run's team size (0: every core of this machine)
    memory-budget=64KiB          the fastest mode that fits (with mode=: that mode, which must fit)
    target=cpu                   the code generation target
    winograd=off | layout=nchw   the CPU target's Winograd convolutions and channel layout
    kernel=NODE:CANDIDATE        run a compiled node (as `pyc explain` names it) on another
                                 applicable candidate (repeatable, one per node)

Keys a user leaves out keep the artifact's value (manifest `flags`). A malformed alternative is
PYC-E066, naming the key and listing the known ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import PycError
from ..units import SIZE_UNITS, parse_quantity

KEYS = ("mode", "threads", "memory-budget", "target", "winograd", "layout", "kernel")
_ON = {"on": True, "true": True, "1": True, "yes": True,
       "off": False, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Alternative:
    """A build configuration: what the simulator replans and predicts. `kernels` maps a
    compiled node's name to the candidate it is forced onto (sorted pairs: hashable)."""

    mode: str = "balanced"
    threads: int = 0
    memory_budget: int | None = None
    target: str = "cpu"
    winograd: bool = True
    layout: str = "nchw"
    kernels: tuple[tuple[str, str], ...] = ()
    # whether `mode` was asked for (with a budget: a mode not asked for is the fastest that fits)
    mode_given: bool = True
    label: str = ""

    def describe(self) -> str:
        """The alternative as a --what-if text would write it (every key)."""
        parts = [f"mode={self.mode}" if self.mode_given else "mode=auto",
                 f"threads={self.threads}", f"target={self.target}",
                 f"winograd={'on' if self.winograd else 'off'}", f"layout={self.layout}"]
        if self.memory_budget is not None:
            parts.append(f"memory-budget={self.memory_budget}")
        parts += [f"kernel={node}:{name}" for node, name in self.kernels]
        return ",".join(parts)

    def build_options(self) -> dict[str, Any]:
        """The keyword arguments of api.build that make this alternative."""
        return {"mode": self.mode if self.mode_given else None, "threads": self.threads,
                "memory_budget": self.memory_budget, "target": self.target,
                "winograd": self.winograd, "layout": self.layout}


@dataclass(frozen=True)
class Changes:
    """The keys one --what-if text sets (None: keep the base's)."""

    values: dict[str, Any] = field(default_factory=dict)
    kernels: tuple[tuple[str, str], ...] = ()
    text: str = ""


def from_flags(flags: dict[str, Any], mode: str, target: str) -> Alternative:
    """The artifact's own configuration, from its manifest's `flags`."""
    return Alternative(mode=mode, threads=int(flags.get("threads", 0) or 0),
                       memory_budget=flags.get("memory_budget"), target=target,
                       winograd=bool(flags.get("winograd", True)),
                       layout=str(flags.get("layout", "nchw")), label="current")


def parse_what_if(text: str) -> Changes:
    """`mode=memory_first,threads=2,kernel=fc:matmul_naive` -> the keys it changes (PYC-E066
    for an unknown key, a key given twice, a value that does not parse)."""
    values: dict[str, Any] = {}
    kernels: dict[str, str] = {}
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise _malformed(text, "it names no KEY=VALUE")
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip().lower().replace("_", "-"), value.strip()
        if not sep or key not in KEYS:
            raise _malformed(text, f"{part!r} is not KEY=VALUE with a known key")
        if key == "kernel":
            node, colon, candidate = value.rpartition(":")
            if not colon or not node or not candidate:
                raise _malformed(text, f"kernel={value!r} is not NODE:CANDIDATE")
            if node in kernels:
                raise _malformed(text, f"node {node!r} is given two kernels")
            kernels[node] = candidate
            continue
        if key in values:
            raise _malformed(text, f"{key} is given twice")
        values[key] = _value(key, value, text)
    return Changes(values, tuple(sorted(kernels.items())), text)


def apply(base: Alternative, changes: Changes) -> Alternative:
    """`base` with the keys `changes` sets; a memory budget without a mode lets the budget
    choose the mode (the fastest that fits, as `pyc build --memory-budget` does)."""
    values = dict(changes.values)
    mode_given = base.mode_given
    if "memory-budget" in values and "mode" not in values:
        mode_given = False
    if "mode" in values:
        mode_given = True
    kernels = dict(base.kernels)
    kernels.update(dict(changes.kernels))
    return replace(base, mode=values.get("mode", base.mode),
                   threads=values.get("threads", base.threads),
                   memory_budget=values.get("memory-budget", base.memory_budget),
                   target=values.get("target", base.target),
                   winograd=values.get("winograd", base.winograd),
                   layout=values.get("layout", base.layout),
                   kernels=tuple(sorted(kernels.items())), mode_given=mode_given,
                   label=changes.text or base.label)


def _value(key: str, value: str, text: str) -> Any:
    if key == "mode":
        from ..planning.policy import get_policy

        if not value:
            raise _malformed(text, "mode= names no policy")
        try:
            get_policy(value)
        except PycError as exc:
            raise _malformed(text, f"mode={value!r}: {exc.what}") from None
        return value
    if key == "threads":
        if not re.fullmatch(r"[0-9]+", value) or int(value) > 1024:
            raise _malformed(text, f"threads={value!r} is not a count from 0 to 1024")
        return int(value)
    if key == "memory-budget":
        if value.lower() in ("none", "off"):
            return None
        return _size(value, text)
    if key == "target":
        from ..targets import TARGETS

        if value not in TARGETS:
            raise _malformed(text, f"target={value!r} is not one of {', '.join(TARGETS)}")
        return value
    if key == "winograd":
        if value.lower() not in _ON:
            raise _malformed(text, f"winograd={value!r} is not on or off")
        return _ON[value.lower()]
    from ..targets import LAYOUTS  # key == "layout"

    if value not in LAYOUTS:
        raise _malformed(text, f"layout={value!r} is not one of {', '.join(LAYOUTS)}")
    return value


def _size(value: str, text: str) -> int:
    """The units `--memory-budget` takes (units.SIZE_UNITS)."""
    size = parse_quantity(value, SIZE_UNITS)
    if size is None:
        raise _malformed(text, f"memory-budget={value!r} is not a size (e.g. 64KiB, 2MB, 4096)")
    return int(size)


def _malformed(text: str, why: str) -> PycError:
    return PycError("E066", f"--what-if {text!r}: {why}", where="--what-if",
                    hint=f"write KEY=VALUE pairs separated by commas; keys: {', '.join(KEYS)} "
                    "(e.g. mode=memory_first,threads=1 or kernel=NODE:CANDIDATE)")


def bad_kernel(node: str, why: str, known: list[str]) -> PycError:
    """A kernel override the model cannot take (an unknown node, a candidate that does not
    apply): PYC-E066 listing what would."""
    return PycError("E066", f"--what-if kernel={node}:...: {why}", where=f"node {node!r}",
                    hint=(f"choose one of: {', '.join(known)}" if known else
                          "see `pyc explain ARTIFACT` for the compiled nodes and their kernels"))
