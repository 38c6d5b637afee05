"""What `pyc build` shows on stderr while it works (a live step display on a terminal) and,
with --verbose, the wall time of every step afterwards. Nothing here reaches the artifact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..progress import BuildSteps
from ..units import format_seconds


@dataclass
class BuildDisplay:
    """The build's timed steps and, for --tune, a callback that moves a progress bar over the
    kernel signatures being timed (None when nothing is shown)."""

    steps: BuildSteps
    tune_progress: Callable[[int, int, str], None] | None = None


@contextmanager
def build_display(model_name: str, quiet: bool) -> Iterator[BuildDisplay]:
    """BuildSteps whose current step is shown on stderr (spinner, step, elapsed time; erased
    when done), plus a bar while --tune times kernels, when stderr is a terminal and --quiet is
    not given; silent otherwise, so logs and pipes get only the final summary."""
    steps = BuildSteps()
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield BuildDisplay(steps)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"building {escape(model_name)}", total=None)
        steps.on_start = lambda name: progress.update(
            task, description=f"building {escape(model_name)}: {escape(name)}")
        tuning: list[TaskID] = []

        def tune_progress(done: int, total: int, what: str) -> None:
            if not tuning:
                tuning.append(progress.add_task("tuning", total=total))
            progress.update(tuning[0], completed=done, total=total,
                            description=f"tuning {escape(what)}")

        yield BuildDisplay(steps, tune_progress)


def print_step_times(steps: BuildSteps, elapsed: float) -> None:
    """--verbose: every step with its wall time, in the order they ran (stderr)."""
    other = "other (checks, writing files)"
    width = max([len(other)] + [len(name) for name, _ in steps.times])
    click.echo("build steps (wall time):", err=True)
    for name, seconds in steps.times:
        click.echo(f"  {name:<{width}}  {seconds * 1e3:9.1f} ms", err=True)
    click.echo(f"  {other:<{width}}  "
               f"{(elapsed - steps.steps_s) * 1e3:9.1f} ms", err=True)
    click.echo(f"  {'total':<{width}}  {elapsed * 1e3:9.1f} ms ({format_seconds(elapsed)})",
               err=True)
