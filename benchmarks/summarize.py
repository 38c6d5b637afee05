"""Medians over several bench.py runs, as a Markdown table (what benchmarks/README.md quotes).

    python benchmarks/summarize.py benchmarks/results/bench-cpu-run*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

COLUMNS = ("case", "PyC p50", "PyC p95", "ORT p50", "ORT p95", "ORT/PyC p50",
           "PyC arena KiB", "PyC working KiB", "ORT working KiB", "ORT/PyC mem")


def load(paths: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Case label -> its result in every run (runs where it did not finish are left out)."""
    by_case: dict[str, list[dict[str, Any]]] = {}
    versions = set()
    for path in paths:
        data = json.loads(Path(path).read_text())
        versions.add(data["machine"].get("pyc_sources", {}).get("sources_sha256"))
        if data["machine"].get("pyc_sources_changed_during_run"):
            print(f"warning: PyC's sources changed during {path}", file=sys.stderr)
        for result in data["results"]:
            by_case.setdefault(result["case"], [])
            if result["status"] == "ok":
                by_case[result["case"]].append(result)
    if len(versions) > 1:
        print("warning: the runs used different PyC sources (pyc_sources.sources_sha256)",
              file=sys.stderr)
    return by_case


def med(runs: list[dict[str, Any]], *keys: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return median(values) if values else None


def ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1e3:.1f} µs" if value < 1 else f"{value:.2f} ms"


def num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}{unit}" if unit else f"{value:,.0f}"


def row(case: str, runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return [case, "failed", *[""] * (len(COLUMNS) - 2)]
    arena = med(runs, "plan", "arena_bytes")
    latency = [ms(med(runs, "latency", engine, stat))
               for engine in ("pyc", "ort") for stat in ("p50_ms", "p95_ms")]
    memory = [num(None if arena is None else arena / 1024),
              num(med(runs, "memory", "pyc", "working_kib")),
              num(med(runs, "memory", "ort", "working_kib")), num(med(runs, "mem_ratio"), "×")]
    return [case, *latency, num(med(runs, "ratio_p50"), "×"), *memory]


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(c, r)) + " |" for c, r in load(paths).items()]
    print(f"Medians over {len(paths)} run(s):\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
