"""Printing a comparison: rich tables for people (the JSON form is CompareReport.to_json)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from . import CompareReport
from .metrics import ValueComparison
from .per_node import PerNodeReport


def _error(value: float) -> str:
    return f"{value:.3g}"


def _verdict(comparison: ValueComparison) -> str:
    if comparison.passed:
        return "[green]pass[/green]"
    return f"[bold red]FAIL[/bold red] ({comparison.mismatches} elements)"


def _tolerance(comparison: ValueComparison) -> str:
    tol = comparison.tolerance
    return "exact" if tol.rtol == 0 and tol.atol == 0 else f"rtol {tol.rtol:g}, atol {tol.atol:g}"


def print_report(report: CompareReport, console: Console) -> None:
    table = Table(title=f"outputs vs {report.reference} ({report.model})")
    for column in ("output", "type", "max abs err", "max rel err", "tolerance", "result"):
        table.add_column(column, overflow="fold")
    for c in report.outputs:
        table.add_row(c.name, f"{c.dtype}{list(c.shape)}", _error(c.max_abs_error),
                      _error(c.max_rel_error), _tolerance(c), _verdict(c))
    console.print(table)
    if report.per_node is not None:
        print_per_node(report.per_node, console)
        if report.passed and report.per_node.first_divergent is not None:
            console.print("the outputs are within tolerance: an intermediate beyond it is often "
                          "rounding grown through a deep network; --rtol/--atol loosen the check")
    if report.passed:
        console.print(f"all {len(report.outputs)} output(s) within tolerance")


def print_per_node(report: PerNodeReport, console: Console) -> None:
    table = Table(title=f"intermediate values in schedule order ({len(report.values)} compared)")
    for column in ("step", "node", "op", "kernel", "value", "max abs err", "max rel err", "result"):
        table.add_column(column, overflow="fold")
    for row in report.values:
        style = "bold" if row is report.first_divergent else None
        table.add_row(str(row.step.step), row.step.node, row.step.op, row.step.kernel,
                      row.comparison.name, _error(row.comparison.max_abs_error),
                      _error(row.comparison.max_rel_error), _verdict(row.comparison), style=style)
    console.print(table)
    _print_absent(report, console)
    _print_first_divergent(report, console)


def _print_absent(report: PerNodeReport, console: Console) -> None:
    fused = Counter(a.fused_into for a in report.absent if a.fused_into)
    other = Counter(a.reason for a in report.absent if not a.fused_into)
    notes = [f"{sum(fused.values())} ONNX value(s) were fused away in {len(fused)} node(s) "
             "(computed inside a fused loop or epilogue, never stored)"]
    notes += [f"{n} {reason}" for reason, n in sorted(other.items())]
    if report.pyc_only:
        notes.append(f"{len(report.pyc_only)} compiled value(s) have no ONNX counterpart")
    console.print("; ".join(notes))
    if report.debug_output_max_abs_diff:
        console.print(f"note: the debug build's outputs differ from the artifact's by up to "
                      f"{report.debug_output_max_abs_diff:.3g}")


def _print_first_divergent(report: PerNodeReport, console: Console) -> None:
    first = report.first_divergent
    if first is None:
        console.print("[green]every compared intermediate is within tolerance[/green]")
        return
    step, c = first.step, first.comparison
    console.print(f"[bold red]first divergent node[/bold red] (schedule step {step.step}): "
                  f"{step.node} ({step.op}), kernel {step.kernel}"
                  + (f", C function {step.function}" if step.function else "")
                  + f"\n  fused group: {', '.join(step.fused_from)}"
                  + f"\n  value {c.name}: max abs err {_error(c.max_abs_error)}, max rel err "
                  f"{_error(c.max_rel_error)}, {c.mismatches} element(s) beyond {_tolerance(c)}"
                  + (f", worst at {list(c.worst_index)}" if c.worst_index is not None else ""))
    if step.kernel == "conv2d_winograd":
        console.print("  its kernel is Winograd F(4x4,3x3), which rounds more than a direct sum "
                      "(docs/architecture.md): rebuild with --no-winograd to hold it to these "
                      "tolerances")
    hidden = report.hidden_in(step.node)
    if hidden:
        console.print(f"  computed inside it, never stored (not comparable): {', '.join(hidden)}")
