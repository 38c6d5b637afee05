"""The text form of `pyc check`: shares, guessed shapes, failures, and what --input-shape decides."""

from __future__ import annotations

from ..check import CheckReport, Problem
from .output import echo


def print_check_report(report: CheckReport) -> None:
    guessed = " at the guessed shapes" if report.assumed_shapes else ""
    echo(f"{report.model}: {report.nodes - report.unsupported_nodes}/{report.nodes} nodes "
         f"({report.node_share:.1%}) and {report.flop_share:.1%} of FLOPs compile{guessed}")
    if report.assumed_shapes:
        shapes = ", ".join(f"{name}={','.join(map(str, dims))}"
                           for name, dims in report.assumed_shapes.items())
        echo(f"  unknown dims guessed: {shapes} (give --input-shape NAME=d0,d1,... for the "
             "real sizes)")
    _print_groups(report.problems, "")
    if report.undecided:
        count = sum(len(group) for group in report.undecided.values())
        echo(f"needs --input-shape to decide ({count}): these appear at a guessed size "
                   "and may not at the real one")
        _print_groups(report.undecided, "  ")


def _print_groups(problems: dict[str, list[Problem]], indent: str) -> None:
    for reason, group in problems.items():
        echo(f"{indent}{reason} ({len(group)}):")
        for problem in group:
            echo(f"{indent}  {problem.node!r} {problem.op}: {problem.detail}")
