"""The what-if comparison as data (schema `pyc.whatif/1`) and as tables: each alternative's
predicted arena and latency beside the current artifact's, with the evidence behind each."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..passes import latency_model as cost
from ..units import format_size
from . import simulate
from .spec import Alternative, apply, parse_what_if

SCHEMA = "pyc.whatif/1"


def what_if_data(artifact: Path, texts: Sequence[str], measure: bool = False,
                 timings_file: Path | None = None, model: Path | None = None) -> dict[str, Any]:
    """The artifact's own plan and each alternative `texts` names, predicted."""
    changes = [parse_what_if(text) for text in texts]  # malformed text fails before any work
    setup = simulate.from_artifact(artifact, model)
    timings = simulate.artifact_timings(setup, measure, timings_file)
    calibration = simulate.calibration_for(setup, timings)
    current = simulate.simulate(setup, setup.base, timings, calibration)
    manifest = setup.manifest or {}
    alts = [apply(setup.base, c) for c in changes]
    at_threads = {}
    if measure and timings is not None:  # a team size is a run-time setting: time it too
        for alt in alts:
            team = cost.effective_threads(alt.threads)
            if team != timings.threads and team not in at_threads:
                at_threads[team] = simulate.measure_timings(setup, threads=team)
    scenarios = [simulate.simulate(setup, alt, timings, calibration, at_threads) for alt in alts]
    return {
        "schema": SCHEMA, "artifact": str(artifact),
        "current": {**current.to_json(), "built_arena_bytes": manifest.get("arena_bytes"),
                    "measured_latency_ms": None if timings is None else timings.latency_ms},
        "timings": None if timings is None else
        {"source": timings.source, "threads": timings.threads, "calls": len(timings.calls),
         "run_ratio": timings.run_ratio},
        "calibration": calibration.basis,
        "alternatives": [_versus(s.to_json(), current.to_json(), current.kernels, s.kernels)
                         for s in scenarios],
    }


def compare_data(setup: simulate.Setup, alts: Sequence[Alternative]) -> dict[str, Any]:
    """`pyc plan --compare-modes`: every alternative planned and predicted, ranked by predicted
    latency, then arena (an alternative no plan allows last)."""
    calibration = simulate.calibration_for(setup, None)
    rows = [simulate.simulate(setup, alt, None, calibration).to_json() for alt in alts]
    rows.sort(key=lambda r: (bool(r["error"]), _finite(r["latency_ms"]), r["arena_bytes"],
                             r["alternative"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    fastest = min((r["latency_ms"] for r in rows if not r["error"]), default=None)
    smallest = min((r["arena_bytes"] for r in rows if not r["error"]), default=0)
    return {"schema": SCHEMA, "model": str(setup.model_path), "calibration": calibration.basis,
            "fastest_ms": fastest, "smallest_arena_bytes": smallest, "ranked": rows}


def _finite(value: float | None) -> float:
    return value if isinstance(value, float) and math.isfinite(value) else float("inf")


def _versus(alt: dict[str, Any], current: dict[str, Any], before: dict[str, str],
            after: dict[str, str]) -> dict[str, Any]:
    changed = [f"{node}: {before.get(node, '-')} -> {kernel}" for node, kernel in after.items()
               if before.get(node) != kernel]
    return {**alt, "arena_change": _ratio(alt["arena_bytes"], current["arena_bytes"]),
            "latency_change": _ratio(alt["latency_ms"], current["latency_ms"]),
            "kernels_changed": changed}


def _ratio(new: float, old: float) -> float | None:
    if not old or not isinstance(new, (int, float)) or not math.isfinite(new):
        return None
    return round(new / old, 4)


def print_what_if(data: dict[str, Any], console: Console) -> None:
    current = data["current"]
    timings = data["timings"]
    source = ("no per-kernel timings of this artifact (`--measure` times its kernels, "
              "`--timings FILE` reads `pyc run --profile --json`)" if timings is None else
              f"per-kernel timings: {timings['source']}, {timings['calls']} calls at "
              f"{timings['threads']} thread(s)")
    console.print(escape(f"What if: {data['artifact']} ({source}; cost model calibration: "
                         f"{data['calibration']})"), highlight=False)
    table = Table(title="Predicted, without building (arena: the planner rerun, exact; latency: "
                        "the model below)")
    for column in ("alternative", "mode", "arena", "vs current", "latency", "vs current",
                   "kernels changed"):
        table.add_column(column, justify="left" if column in ("alternative", "mode") else "right")
    measured = current.get("measured_latency_ms")
    table.add_row("current", current["mode"], format_size(current["arena_bytes"]), "",
                  _ms(current["latency_ms"]) + (f" (measured {_ms(measured)})" if measured else ""),
                  "", "")
    for alt in data["alternatives"]:
        if alt["error"]:
            table.add_row(escape(alt["label"]), "-", "-", "-", "-", "-", escape(alt["error"][:60]))
            continue
        table.add_row(escape(alt["label"]), alt["mode"], format_size(alt["arena_bytes"]),
                      _times(alt["arena_change"]), _ms(alt["latency_ms"]),
                      _times(alt["latency_change"]), str(len(alt["kernels_changed"])))
    console.print(table)
    for alt in data["alternatives"]:
        if alt["error"]:
            console.print(escape(f"  {alt['label']}: {alt['error']}"), highlight=False)
            continue
        console.print(escape(f"  {alt['label']}: latency from {_bases(alt['bases'])}; "
                             f"{alt['threads']} thread(s)"
                             + ("; kernels: " + "; ".join(alt["kernels_changed"][:4])
                                + (f"; {len(alt['kernels_changed']) - 4} more"
                                   if len(alt["kernels_changed"]) > 4 else "")
                                if alt["kernels_changed"] else "")), highlight=False)


def print_ranking(data: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Alternatives of {data['model']}, fastest predicted first (nothing "
                        f"built; calibration: {data['calibration']})")
    for column in ("#", "alternative", "mode", "latency", "arena", "latency from"):
        table.add_column(column, justify="right" if column in ("#", "latency", "arena")
                         else "left")
    for row in data["ranked"]:
        if row["error"]:
            table.add_row(str(row["rank"]), escape(row["label"]), "-", "-", "-",
                          escape(row["error"][:70]))
            continue
        table.add_row(str(row["rank"]), escape(row["label"]), row["mode"], _ms(row["latency_ms"]),
                      format_size(row["arena_bytes"]), escape(_bases(row["bases"])))
    console.print(table)


def _bases(bases: dict[str, float]) -> str:
    return ", ".join(f"{share:.0%} {kind}" for kind, share in bases.items()) or "nothing to run"


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 1000:.1f} us" if value < 1 else f"{value:.3f} ms"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"
