"""Printing a `pyc run --profile` result: the slowest kernel calls, then the time per kernel."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table

from ..runtime.profile import CallTime, Profile

SLOWEST_SHOWN = 20


def print_profile(profile: Profile, console: Console) -> None:
    console.print(f"profile: {len(profile.calls)} kernel calls, median of {profile.runs} runs, "
                  f"{profile.total_ms:.3f} ms in kernels per run")
    console.print(_slowest_calls(profile))
    console.print(_per_kernel(profile))


def _share(ms: float, profile: Profile) -> str:
    return f"{100 * ms / profile.total_ms:.1f}%" if profile.total_ms > 0 else "-"


def _gflops(call: CallTime) -> str:
    value = call.gflops
    return "" if value is None else f"{value:.1f}"


def _slowest_calls(profile: Profile) -> Table:
    table = Table(title=f"slowest {min(SLOWEST_SHOWN, len(profile.calls))} calls")
    for column in ("call", "node", "op", "kernel", "ms", "share", "GFLOP/s"):
        table.add_column(column, justify="right" if column in ("call", "ms", "share", "GFLOP/s")
                         else "left")
    ranked = sorted(profile.calls, key=lambda c: (-c.median_ms, c.call))[:SLOWEST_SHOWN]
    for call in ranked:
        table.add_row(str(call.call), call.node, call.op, call.kernel, f"{call.median_ms:.4f}",
                      _share(call.median_ms, profile), _gflops(call))
    return table


def _per_kernel(profile: Profile) -> Table:
    totals: dict[str, list[CallTime]] = defaultdict(list)
    for call in profile.calls:
        totals[call.kernel].append(call)
    table = Table(title="time per kernel")
    for column in ("kernel", "calls", "ms", "share", "GFLOP/s"):
        table.add_column(column, justify="left" if column == "kernel" else "right")
    for kernel, calls in sorted(totals.items(), key=lambda kv: -sum(c.median_ms for c in kv[1])):
        ms = sum(c.median_ms for c in calls)
        flops = sum(c.flops for c in calls)
        table.add_row(kernel, str(len(calls)), f"{ms:.4f}", _share(ms, profile),
                      f"{flops / ms / 1e6:.1f}" if flops and ms > 0 else "")
    return table
