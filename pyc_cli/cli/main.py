"""The `pyc` command line: a thin layer over pyc_cli.api (build, run, explain)."""

from __future__ import annotations

import functools
import json
import re
import sys
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console

from .. import __version__
from ..errors import PycError
from ..passes.context import MODES
from ..passes.pipeline import PASS_NAMES

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def printable(text: object) -> str:
    """`text` with what a terminal or a strict UTF-8 stream cannot take escaped: paths given as
    undecodable bytes (lone surrogates) and control characters from model-provided names."""
    text = str(text)
    try:  # undecodable bytes of a path come back as the bytes, escaped (b"\xff" -> "\\xff")
        escaped = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in escaped)


def echo(text: object, err: bool = False) -> None:
    click.echo(printable(text), err=err)


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    if isinstance(exc, PycError):
        echo(str(exc).replace("\n", " "), err=True)
        sys.exit(EXIT_USER_ERROR)
    echo(f"PYC-E090: internal compiler error: {type(exc).__name__}: {exc}; what to do: "
         "rerun with --debug and report it", err=True)
    sys.exit(EXIT_INTERNAL_ERROR)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every exception into a reason-coded message and a non-zero exit (traceback only
    with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001  (the one place every error is reported)
            _fail(exc, debug)

    return wrapper


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        if not sep or not name or any(d <= 0 for d in shape):
            raise ValueError
    except ValueError:
        raise PycError("E006", f"--input-shape {text!r} is not NAME=d0,d1,...",
                       hint="e.g. --input-shape input_ids=1,128 (positive integers)") from None
    return name, shape


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024,
               "mib": 1024**2, "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """'64MiB' -> 67108864; plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise PycError("E050", f"--memory-budget {text!r} is not a size",
                       hint="e.g. 64MiB, 512KiB, 2GB or a number of bytes")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


class _PycGroup(click.Group):
    """Command-line mistakes click itself detects (unknown option, bad value, a file where a
    directory is needed) are reported as PYC-E050 like every other user error."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "pyc"
            echo(f"PYC-E050: {exc.format_message()}; where: {where}; what to do: see "
                 f"`{where} --help`".replace("\n", " "), err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_PycGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyc")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def main(debug: bool) -> None:
    """PyC: compile ONNX models ahead of time into small, inspectable artifacts."""


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Artifact directory (default: MODEL.pyc beside the model).")
@click.option("--mode", type=click.Choice(MODES), default="balanced", show_default=True,
              help="Memory planning policy.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="Fix the shape of an input with symbolic dims (repeatable).")
@click.option("--memory-budget", metavar="SIZE",
              help="Largest activation arena allowed (e.g. 64MiB, 512KiB, 1GB); the fastest mode "
                   "that fits is chosen, or the build fails naming the smallest arena.")
@click.option("--target", default="cpu", show_default=True, help="Code generation target.")
@click.option("--dump-ir-after", type=click.Choice(PASS_NAMES), metavar="PASS",
              help="Print the IR after PASS and stop (writes nothing).")
@click.option("--keep-source/--no-keep-source", default=False, show_default=True,
              help="Keep a copy of the model (and its external data) in source/ for "
                   "`pyc run --compare` (stores the weights twice); without it, --compare finds "
                   "the model beside the artifact or takes --model PATH.")
@click.option("--name", metavar="NAME",
              help="C identifier prefixing every symbol the library exports (NAME_create, "
                   "NAME_run, ...) and its SONAME libNAME.so, so one C program can link many "
                   "models (default: the model file name made an identifier).")
@reports_errors
def build(model: Path, out_dir: Path | None, mode: str, input_shapes: tuple[str, ...],
          memory_budget: str | None, target: str, dump_ir_after: str | None,
          keep_source: bool, name: str | None) -> None:
    """Compile MODEL (.onnx) into an artifact directory.

    The artifact holds manifest.json, the IR after passes (model.ir), the memory plan, the
    decision log, generated C sources, weights.bin and the compiled library.
    """
    from ..api import build as build_artifact
    from ..api import compile_graph
    from ..ir.text import print_graph

    shapes = dict(parse_input_shape(text) for text in input_shapes)
    if dump_ir_after:
        graph, _ = compile_graph(model, mode, shapes, target, stop_after=dump_ir_after)
        click.echo(print_graph(graph), nl=False)
        return
    budget = parse_size(memory_budget) if memory_budget is not None else None
    result = build_artifact(model, out_dir, mode=mode, input_shapes=shapes, target=target,
                            memory_budget=budget, keep_source=keep_source, name=name)
    plan = result.plan
    mode = plan.mode
    echo(f"built {result.artifact} ({len(result.graph.nodes)} kernels, arena "
               f"{plan.arena_bytes} B, no-reuse {plan.no_reuse_bytes} B, lower bound "
               f"{plan.lower_bound_bytes} B, mode {mode})")


def read_inputs(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ValueError("not a regular file")
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("not an .npz archive")
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PycError("E040", f"cannot read inputs from {path}: {exc}", where=str(path),
                       hint="save inputs with numpy.savez(path, name=array, ...)") from exc


def write_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Outputs as an .npz at exactly `path` (numpy would append .npz to a path without it)."""
    try:
        with open(path, "wb") as handle:
            np.savez(handle, **outputs)
    except OSError as exc:
        raise PycError("E022", f"cannot write outputs to {path}: {exc.strerror or exc}",
                       where=str(path), hint="choose another --output path") from exc


def random_inputs(model: Any, seed: int) -> dict[str, np.ndarray]:
    """Random feeds matching the model (floats ~ N(0,1), integers in [0, 100), bools 0/1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.inputs:
        try:
            if np.issubdtype(spec.dtype, np.floating):
                feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
            elif spec.dtype == np.bool_:
                feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(np.bool_)
            else:
                feeds[spec.name] = rng.integers(0, 100, spec.shape).astype(spec.dtype)
        except MemoryError:
            raise PycError("E042", f"cannot allocate a random input {spec.name!r} of shape "
                           f"{list(spec.shape)}", where=f"input {spec.name!r}",
                           hint="run it on a machine with more memory") from None
    return feeds


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--inputs", "inputs_path", type=click.Path(dir_okay=False, path_type=Path),
              help="An .npz file with one array per model input.")
@click.option("--random-inputs", "seed", type=int, default=None, metavar="SEED",
              help="Use seeded random inputs instead of --inputs.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write outputs (keyed by output name) to this .npz file.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Time this many runs and report p50/p95 latency.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--compare", "reference", type=click.Choice(["ort"]),
              help="Also run onnxruntime on the source model with the same inputs and report "
                   "per-output errors; exits non-zero (PYC-E043) when one is out of tolerance.")
@click.option("--per-node", is_flag=True,
              help="With --compare: compare every intermediate that exists after fusion and name "
                   "the first node that diverges (builds a debug copy in a temporary directory).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --compare: the source model, for artifacts built with --no-keep-source "
                   "(checked against the sha256 in the manifest).")
@click.option("--rtol", type=click.FloatRange(min=0), default=None,
              help="With --compare: relative tolerance for floating outputs (default: float32 "
                   "1e-4, float16 2e-3, float64 1e-7; integers and bools are exact).")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="With --compare: absolute tolerance for floating outputs (default: float32 "
                   "1e-5, float16 1e-3, float64 1e-9).")
@reports_errors
def run(artifact: Path, inputs_path: Path | None, seed: int | None, output_path: Path | None,
        repeat: int, as_json: bool, reference: str | None, per_node: bool,
        model_path: Path | None, rtol: float | None, atol: float | None) -> None:
    """Run a built ARTIFACT (its hashes are verified before native code loads)."""
    from ..api import load

    if (inputs_path is None) == (seed is None):
        raise PycError("E050", "give exactly one of --inputs FILE.npz or --random-inputs SEED",
                       hint="e.g. pyc run artifact/ --inputs x.npz")
    _check_compare_options(reference, per_node, model_path, rtol, atol)
    model = load(artifact)
    feeds = read_inputs(inputs_path) if inputs_path is not None else random_inputs(model, seed or 0)
    outputs = model.run(feeds)
    times = model.time_runs(feeds, repeat) if repeat > 1 else []
    if output_path is not None:
        write_outputs(output_path, outputs)
    comparison = None
    if reference is not None:  # the reference runs on the inputs the artifact just ran on
        from ..compare import CompareOptions, compare_run

        comparison = compare_run(artifact, feeds, outputs, CompareOptions(
            reference, per_node, model_path, rtol, atol))
    summary = {
        "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype)}
                    for name, v in outputs.items()},
        "latency_ms": _latency(times),
        "arena_bytes": model.arena_bytes,
    }
    if comparison is not None:
        summary["compare"] = comparison.to_json()
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        _print_run(outputs, summary, times)
        if comparison is not None:
            from ..compare.report import print_report

            print_report(comparison, Console(width=160))
    if comparison is not None and not comparison.passed:
        raise PycError("E043", f"output(s) {', '.join(comparison.failing())} differ from "
                       f"{comparison.reference} beyond tolerance", where=str(artifact),
                       hint="see the first divergent node in the report" if per_node
                       else "rerun with --per-node to find the first node that diverges")


def _check_compare_options(reference: str | None, per_node: bool, model_path: Path | None,
                           rtol: float | None, atol: float | None) -> None:
    given = [flag for flag, value in (("--per-node", per_node or None), ("--model", model_path),
                                      ("--rtol", rtol), ("--atol", atol)) if value is not None]
    if reference is None and given:
        raise PycError("E050", f"{', '.join(given)} only apply with --compare ort",
                       hint="e.g. pyc run artifact/ --random-inputs 0 --compare ort --per-node")


def _print_run(outputs: dict[str, np.ndarray], summary: dict[str, Any], times: list[float]) -> None:
    for name, value in outputs.items():
        with np.errstate(all="ignore"):  # statistics of inf/NaN outputs are just printed
            mean, std = float(np.mean(value)), float(np.std(value))
        echo(f"{name}: {value.dtype}{list(value.shape)} mean {mean:.6g} std {std:.6g}")
    if times:
        lat = summary["latency_ms"]
        echo(f"latency over {lat['runs']} runs: p50 {lat['p50']:.4f} ms, "
             f"p95 {lat['p95']:.4f} ms")


def _latency(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"p50": None, "p95": None, "runs": 0}
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95)),
            "runs": len(times)}


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="Fix the shape of an input (symbolic dims are otherwise taken as 1).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@reports_errors
def check(model: Path, input_shapes: tuple[str, ...], as_json: bool) -> None:
    """Report every node of MODEL that PyC cannot compile, grouped by reason, with the share of
    nodes and FLOPs that are supported. Exits 1 when something is unsupported."""
    from ..check import check_model

    report = check_model(model, dict(parse_input_shape(t) for t in input_shapes))
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        echo(f"{report.model}: {report.nodes - report.failing_nodes}/{report.nodes} nodes "
             f"({report.node_share:.1%}) and {report.flop_share:.1%} of FLOPs compile")
        if report.assumed_dims:
            echo(f"  symbolic dims taken as 1 for: {', '.join(report.assumed_dims)}")
        for reason, problems in report.problems.items():
            echo(f"{reason} ({len(problems)}):")
            for problem in problems:
                echo(f"  {problem.node!r} {problem.op}: {problem.detail}")
    if report.problems:
        sys.exit(1)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (with the memory timeline) here.")
@reports_errors
def explain(artifact: Path, as_json: bool, html_path: Path | None) -> None:
    """Explain what the compiler did to ARTIFACT's model and why."""
    from ..explain import explain_data, explanation_html, print_explanation

    data = explain_data(artifact)
    if html_path is not None:
        html = explanation_html(artifact, data)
        try:
            html_path.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise PycError("E022", f"cannot write the report to {html_path}: "
                           f"{exc.strerror or exc}", where=str(html_path),
                           hint="choose another --html path") from exc
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    print_explanation(data, Console(width=140))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--until", "condition", required=True, metavar="CONDITION",
              help="What must stay true: an error code (E009 / PYC-E009: the build fails with it), "
                   "mismatch (PyC differs from onnxruntime), crash, hang, or 'cmd:SHELL COMMAND' "
                   "(exit 0 = still interesting; the candidate is {} or $PYC_REDUCE_MODEL).")
@click.option("-o", "--output", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("small.onnx"), show_default=True, help="Where the smallest model goes.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="Fix the shape of an input with symbolic dims (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Feed seed for mismatch/crash/hang (fuzz failures name theirs).")
@click.option("--special-values", is_flag=True,
              help="mismatch/crash on the special-values feed (NaN, Inf, ...) instead of the normal one.")
@click.option("--time-budget", type=float, default=600.0, show_default=True, help="Seconds to spend.")
@reports_errors
def reduce(model: Path, condition: str, out_path: Path, input_shapes: tuple[str, ...], seed: int,
           special_values: bool, time_budget: float) -> None:
    """Shrink MODEL to a small model for which CONDITION still holds, and print a repro command."""
    from ..testing.reduce import reduce_file

    summary, repro = reduce_file(model, condition, out_path,
                                 dict(parse_input_shape(t) for t in input_shapes), seed,
                                 special_values, time_budget)
    click.echo(summary)
    click.echo(repro)

if __name__ == "__main__":
    main()
