"""Human-readable quantities: the one size and duration formatter every report uses, and the
parser of a number with a unit that size options read ('64MiB', '30s')."""

from __future__ import annotations

import re

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(nbytes: int | float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1, with three significant
    digits: 512 -> '512 B', 1600 * 1024 -> '1.56 MiB', 245760 -> '240 KiB'."""
    value = float(nbytes)
    unit = 0
    while abs(value) >= 1024 and unit < len(_BINARY_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(nbytes)} B"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    text = f"{value:.{digits}f}"
    if text == "1024" and unit < len(_BINARY_UNITS) - 1:  # 1023.9 KiB rounds to the next unit
        return f"1.00 {_BINARY_UNITS[unit + 1]}"
    return f"{text} {_BINARY_UNITS[unit]}"


def format_seconds(seconds: float) -> str:
    """'850 ms' below a second, '13.6 s' above."""
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def format_count(count: int | float, unit: str = "") -> str:
    """A count with an SI prefix and three significant digits: 1769472 -> '1.77 M'."""
    value = float(count)
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            break
        value /= 1000
    if prefix == "":
        return f"{int(count)} {unit}".rstrip()
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {prefix}{unit}"


# the sizes a memory option takes (--memory-budget, --what-if memory-budget=): decimal and
# binary units, and k / m / g as binary
SIZE_UNITS: dict[str, float] = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
                                "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1024,
                                "m": 1024**2, "g": 1024**3}


def parse_quantity(text: str, units: dict[str, float]) -> float | None:
    """A number with an optional unit of `units` ('64MiB', '30s', '90') in the unit's scale;
    None when `text` is not one."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in units:
        return None
    return float(match.group(1)) * units[unit]
