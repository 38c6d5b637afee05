"""The `pyc` command line: a thin layer over pyc_cli.api (build, run, explain)."""

from __future__ import annotations

import errno
import functools
import json
import math
import sys
import traceback
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console

from .. import __version__
from ..errors import PycError, PycWarning
from ..ir.symbolic import parse_input_shapes
from ..ir.types import is_float_numpy
from ..passes.context import MODES
from ..passes.pipeline import PASS_NAMES
from ..targets import DEFAULT_LAYOUT, LAYOUTS, TARGET_NAMES
from ..units import SIZE_UNITS, format_seconds, parse_quantity
from .output import echo

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    exc = _environment_error(exc) or exc
    if isinstance(exc, PycError):
        echo(str(exc).replace("\n", " "), err=True)
        sys.exit(EXIT_USER_ERROR)
    echo(f"PYC-E090: internal compiler error: {type(exc).__name__}: {exc}; what to do: "
         "rerun with --debug and report it", err=True)
    sys.exit(EXIT_INTERNAL_ERROR)


# write failures that come from the machine (full disk, read-only file system), not from PyC
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _environment_error(exc: BaseException) -> PycError | None:
    """What the machine refused (memory, a full disk) is not a compiler bug: a reason code, not
    PYC-E090, so E090 stays the sign of a real defect."""
    if isinstance(exc, MemoryError):
        return PycError("E049", "not enough memory for this step", hint="use smaller shapes "
                        "(--input-shape) or a machine with more memory")
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        target = exc.filename if exc.filename is not None else "the standard output"
        return PycError("E022", f"cannot write {target}: {exc.strerror}", where=str(target),
                        hint="free space or write somewhere else")
    return None


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


def parse_input_values(texts: tuple[str, ...]) -> dict[str, tuple[float, float]] | None:
    """--input-values NAME=LO..HI (numbers; repeatable), as build's `input_values`."""
    found: dict[str, tuple[float, float]] = {}
    for text in texts:
        name, _, bounds = text.partition("=")
        lo, sep, hi = bounds.partition("..")
        try:
            if not name or not sep:
                raise ValueError(text)
            found[name] = (float(lo), float(hi))
        except ValueError:
            raise PycError("E006", f"--input-values {text!r} is not NAME=LO..HI",
                           hint="e.g. --input-values size=0..64") from None
    return found or None


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


def parse_size(text: str) -> int:
    """'64MiB' -> 67108864; plain numbers are bytes."""
    size = parse_quantity(text, SIZE_UNITS)
    if size is None:
        raise PycError("E050", f"--memory-budget {text!r} is not a size",
                       hint="e.g. 64MiB, 512KiB, 2GB or a number of bytes")
    return int(size)


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'30s' -> 30.0, '2m' -> 120.0; a plain number is seconds."""
    seconds = parse_quantity(text, _DURATION_UNITS)
    if seconds is None or not seconds > 0:
        raise PycError("E050", f"--compile-budget {text!r} is not a positive duration",
                       hint="e.g. 30s, 2m, 1.5h or a number of seconds")
    return seconds


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
        except click.ClickException as exc:  # not a usage error (click.File and the like)
            echo(f"PYC-E050: {exc.format_message()}; what to do: see `pyc --help`".replace(
                "\n", " "), err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Every subcommand also takes --debug after its name (`pyc build M.onnx --debug`)."""
        if not any(param.name == "debug" for param in cmd.params):
            cmd.params.append(click.Option(["--debug"], is_flag=True, expose_value=False,
                                           callback=_debug_after_subcommand,
                                           help="Show Python tracebacks for errors."))
        super().add_command(cmd, name)


def _debug_after_subcommand(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:  # reports_errors reads the flag where `pyc --debug CMD` puts it
        ctx.find_root().params["debug"] = True


# measured on Zen 4 (docs/architecture.md, "Winograd convolution")
WINOGRAD_HELP = ("CPU target (AVX2 / AVX-512): run 3x3 stride-1 convolutions as Winograd "
                 "F(4x4,3x3) where the cost model says it beats the implicit GEMM (ResNet-50's "
                 "3x3 layers 1.8-2.5x faster). It rounds more: over ResNet-like layers the worst "
                 "relative error vs float64 was 2.7e-5 (implicit GEMM 2.4e-6), the worst error "
                 "4.3e-6 x sum|x||w| (3.6e-7). --no-winograd keeps every conv off it.")


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
              help="Memory planning policy (with --memory-budget: the default is the fastest "
                   "mode that fits, and a mode given must fit).")
@click.option("--policy", default=None, metavar="NAME",
              help="Planner policy by name: a mode (latency_first, balanced, memory_first are "
                   "the built-in policies) or one a package registers in the `pyc.policies` "
                   "entry point group (docs/planner.md). Same as --mode for a built-in one.")
@click.option("--contract", default=None, metavar="CLAUSES",
              help="What the build promises, comma-separated: arena<=SIZE, deterministic, "
                   "max_rel_err<=X, latency_p95<=TIME (p50/p90/p99 too). The arena is checked "
                   "now, `deterministic` replays the policy's decisions; `pyc run "
                   "--check-contract` measures every clause (docs/planner.md).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="The shape of an input with symbolic dims (repeatable): each dim a number, "
                   "or a named dim with bounds (batch:1..64) that runs take at any size within "
                   "them, optionally with a step (h:32..960/32: multiples of 32); a name bounded "
                   "once may be reused bare by other inputs.")
@click.option("--input-values", "input_values", multiple=True, metavar="NAME=LO..HI",
              help="The values an input may hold (repeatable): they bound the sizes the model "
                   "computes from them at run time (a Range to an input's value, Pad's pads "
                   "from an input); a run whose size exceeds its bound is refused.")
@click.option("--memory-budget", metavar="SIZE",
              help="Largest activation arena allowed (e.g. 64MiB, 512KiB, 1GB); without --mode "
                   "the fastest mode that fits is chosen (and printed), or the build fails "
                   "naming the smallest arena.")
@click.option("--kernel-selection", type=click.Choice(["coselect", "sequential"]),
              default="coselect", show_default=True,
              help="How memory_first (and a --memory-budget build that needs it) chooses "
                   "kernels: together with the memory plan (the fastest kernels whose scratch "
                   "fits), or first, by its scratch cap, before planning (the baseline).")
@click.option("--target", default="cpu", show_default=True,
              metavar=f"[{'|'.join(TARGET_NAMES)}],...",
              help="Code generation target, or several comma-separated (cuda,cpu): one "
                   "artifact holding each, tried in that order when loaded (a target that "
                   "cannot run there falls back to the next with warning PYC-W001).")
@click.option("--dump-ir-after", type=click.Choice(PASS_NAMES),
              help="Print the IR after this pass and stop (writes nothing).")
@click.option("--keep-source/--no-keep-source", default=False, show_default=True,
              help="Keep a copy of the model (and its external data) in source/ for "
                   "`pyc run --compare` (stores the weights twice); without it, --compare finds "
                   "the model beside the artifact or takes --model PATH.")
@click.option("--force", is_flag=True,
              help="Replace an artifact at -o that was built from a different model.")
@click.option("--cpu", default="native", show_default=True, metavar="NAME",
              help="CPU to compile for: a -march value (native = this machine's CPU, x86-64-v3, "
                   "skylake, ...) or `portable` (x86-64-v2 / armv8-a: runs on any CPU of the "
                   "architecture). Loading on a CPU without its features is refused (PYC-E033).")
@click.option("--cpu-features", default="", metavar="+F,-F",
              help="Instruction-set extensions to add or remove, as gcc -m names "
                   "(e.g. +avx2,+fma,-avx512f).")
@click.option("--arch", default=None, metavar="SM",
              help="With --target cuda: the GPU architecture to compile for (sm_80, sm_86, "
                   "sm_89, sm_90; default sm_90). The CUBIN runs on GPUs of that major "
                   "architecture at that minor version or above.")
@click.option("--precision", default=None, metavar="P",
              help="With --target cuda: the compute precision, fp32 (default), tf32, fp16 or "
                   "bf16. tf32/fp16/bf16 run MatMuls on tensor cores with float32 "
                   "accumulation (docs/cuda.md says what else changes).")
@click.option("--winograd/--no-winograd", default=True, show_default=True,
              help=WINOGRAD_HELP)
@click.option("--layout", type=click.Choice(LAYOUTS), default=DEFAULT_LAYOUT, show_default=True,
              help="CPU channel layout: auto puts convolution regions in blocks of one "
                   "vector of channels (NCHWc) where the cost model prices that faster; nchw "
                   "never (exact-order A/B builds); blocked wherever a kernel has it.")
@click.option("--threads", type=click.IntRange(min=0, max=1024), default=0, show_default=True,
              metavar="N",
              help="Threads a run may use (0 = every core of the machine it runs on); "
                   "PYC_NUM_THREADS overrides it at run time. Results do not depend on it.")
@click.option("--slim", is_flag=True,
              help="Keep only what running needs (manifest, library, weights, C headers); "
                   "`pyc explain` then cannot explain it (same as `pyc strip` after a build).")
@click.option("--name", metavar="NAME",
              help="C identifier prefixing every symbol the library exports (NAME_create, "
                   "NAME_run, ...) and its SONAME libNAME.so, so one C program can link many "
                   "models (default: the model file name made an identifier).")
@click.option("--tune", is_flag=True,
              help="Time the kernel variants of every distinct kernel of the model on this "
                   "machine (its CPU; with --target cuda, its GPU) first, and keep the "
                   "fastest in the tuning database (which later builds without --tune use).")
@click.option("--tune-budget", type=click.FloatRange(min=0), default=120.0, show_default=True,
              metavar="SECONDS", help="Wall time --tune may spend on timing kernels.")
@click.option("--retune", is_flag=True,
              help="With --tune: measure again kernels the tuning database already holds.")
@click.option("--tuning-db", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Tuning database file: measured kernel choices, read by every build and "
                   "written by --tune (default: $PYC_TUNING_DB, else "
                   "$XDG_CACHE_HOME/pyc/tuning.json, else ~/.cache/pyc/tuning.json).")
@click.option("--compile-budget", metavar="DURATION",
              help="Wall time the whole build may take (30s, 2m, 90): --tune gets what the "
                   "passes and an estimate of compiling leave of it, or is skipped (both "
                   "logged); a build that takes longer warns PYC-W003. The artifact does not "
                   "depend on it.")
@click.option("--shape-buckets", metavar="auto|N",
              help="With --shape-sample: also build a plan for each of a few boxes of the "
                   "dims clustered from the sample (auto: up to 4; N: up to N), symbolic within "
                   "its box or static for a box of one shape, beside the generic symbolic one; "
                   "a run goes to the smallest box holding its dims (docs/dynamic_shapes.md).")
@click.option("--shape-sample", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The input shapes a deployment sees: a JSON histogram "
                   "[{\"shapes\": {\"x\": [8, 128]}, \"count\": 120}, ...] or an .npz of example "
                   "inputs (keys INPUT or REQUEST/INPUT); implies --shape-buckets auto.")
@click.option("--feedback", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Replan from run telemetry (recorded with PYC_TELEMETRY=FILE): shape buckets "
                   "from the observed shapes, kernels timed faster, the thread count measured "
                   "fastest; each such decision serves feedback:... (docs/planner.md).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Copy the artifact from the build cache when the same model was built with "
                   "the same options, toolchain and PyC before, and keep this build there "
                   "otherwise ($PYC_BUILD_CACHE: its directory, or `off`; default "
                   "~/.cache/pyc/builds). --tune builds are never cached.")
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing but errors (no progress, no summary).")
@click.option("-v", "--verbose", is_flag=True,
              help="Also print the wall time of every build step and pass (stderr).")
@reports_errors
def build(model: Path, out_dir: Path | None, mode: str, policy: str | None,
          contract: str | None, input_shapes: tuple[str, ...],
          input_values: tuple[str, ...], memory_budget: str | None, kernel_selection: str,
          target: str, dump_ir_after: str | None,
          keep_source: bool, force: bool, cpu: str, cpu_features: str, arch: str | None,
          precision: str | None, winograd: bool, layout: str, threads: int,
          slim: bool,
          name: str | None, tune: bool, tune_budget: float, retune: bool,
          tuning_db: Path | None, compile_budget: str | None, shape_buckets: str | None,
          shape_sample: Path | None, feedback: Path | None, cache: bool, quiet: bool,
          verbose: bool) -> None:
    """Compile MODEL (.onnx) into an artifact directory.

    The artifact holds manifest.json, the IR after passes (model.ir), the memory plan, the
    decision log, generated C sources, weights.bin and the compiled library.
    """
    from ..api import build as build_artifact
    from ..api import compile_graph, parse_targets
    from ..ir.text import print_graph
    from ..passes.tuning_db import default_path
    from ..targets import get_target
    from ..targets.cpu.features import parse_features
    from ..tune import TuneOptions
    from .build_progress import build_display, print_step_times

    if quiet and verbose:
        raise PycError("E050", "--quiet and --verbose contradict each other",
                       hint="give at most one of them")
    # numbers, or bounded named dims (batch:1..64) the library reads at run time (issue #15)
    shapes, _ = parse_input_shapes(input_shapes)
    values = parse_input_values(input_values)
    budget = parse_size(memory_budget) if memory_budget is not None else None
    mode_given = click.get_current_context().get_parameter_source("mode") != \
        click.core.ParameterSource.DEFAULT
    mode, mode_given = _policy_or_mode(policy, mode, mode_given)
    if retune and not tune:
        raise PycError("E050", "--retune only applies with --tune", hint="add --tune")
    with build_display(model.name, quiet) as display, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", PycWarning)
        steps = display.steps
        if dump_ir_after:
            # the first target as the build configures it (its ISA picks the kernels)
            first = get_target(parse_targets(target)[0], cpu, tuple(parse_features(cpu_features)),
                               arch, precision, winograd, layout)
            graph, _ = compile_graph(model, mode, shapes, first, stop_after=dump_ir_after,
                                     steps=steps, input_values=values, memory_budget=budget,
                                     kernel_selection=kernel_selection)
        else:
            result = build_artifact(model, out_dir, mode=mode if mode_given else None,
                                    input_shapes=shapes, target=target, memory_budget=budget,
                                    kernel_selection=kernel_selection,
                                    keep_source=keep_source, force=force, cpu=cpu,
                                    cpu_features=cpu_features, threads=threads, slim=slim,
                                    name=name,
                                    steps=steps, tune=tune,
                                    tuning_db=tuning_db or default_path(),
                                    tune_options=TuneOptions(budget_s=tune_budget, retune=retune),
                                    tune_progress=display.tune_progress, arch=arch,
                                    precision=precision, winograd=winograd, layout=layout,
                                    cache=cache, shape_buckets=shape_buckets,
                                    shape_sample=shape_sample, input_values=values,
                                    contract=contract, feedback=feedback,
                                    compile_budget=None if compile_budget is None
                                    else parse_duration(compile_budget))
    for warning in seen:
        click.echo(f"warning: {warning.message}", err=True)
    elapsed = steps.elapsed_s
    if verbose:
        print_step_times(steps, elapsed)
    if dump_ir_after:
        click.echo(print_graph(graph), nl=False)
        return
    if not quiet:
        for note in result.notes:
            echo(note)
    plan = result.plan
    mode = plan.mode
    if not quiet:
        echo(f"built {result.artifact} in {format_seconds(elapsed)} "
             f"({len(result.graph.nodes)} kernels, arena {plan.arena_bytes} B, no-reuse "
             f"{plan.no_reuse_bytes} B, lower bound {plan.lower_bound_bytes} B, mode {mode})")


def read_inputs(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive, by name (an empty archive is refused: it feeds nothing)."""
    arrays = _load_arrays(path)
    if not isinstance(arrays, dict):
        raise PycError("E040", f"{path} holds one unnamed array (an .npy file), not named inputs",
                       where=str(path), hint="pass it as --inputs NAME=FILE.npy, or save an "
                       ".npz with numpy.savez(path, name=array, ...)")
    if not arrays:
        raise PycError("E040", f"{path} holds no arrays", where=str(path),
                       hint="save inputs with numpy.savez(path, name=array, ...)")
    return arrays


def _policy_or_mode(policy: str | None, mode: str, mode_given: bool) -> tuple[str, bool]:
    """The policy a build plans with: --policy NAME (checked now: PYC-E060 lists the known
    ones), else --mode; both given must name the same one."""
    if policy is None:
        return mode, mode_given
    from ..planning.policy import get_policy

    get_policy(policy)
    if mode_given and mode != policy:
        raise PycError("E050", f"--mode {mode} and --policy {policy} name different policies",
                       hint="give one of them (a mode is a built-in policy)")
    return policy, True


def _load_arrays(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """An .npz file as {name: array}, or the one array of an .npy file (told apart by content)."""
    try:
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ValueError("not a regular file")
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded as data:
            if not hasattr(data, "files"):
                raise ValueError("not an .npz or .npy file")
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PycError("E040", f"cannot read inputs from {path}: {exc}", where=str(path),
                       hint="save inputs with numpy.savez(path, name=array, ...) or "
                       "numpy.save(path, array)") from exc


def gather_inputs(specs: tuple[str, ...], input_names: list[str]) -> dict[str, np.ndarray]:
    """Feeds from the --inputs arguments: FILE.npz (arrays by name), FILE.npy (the model's only
    input), or NAME=FILE.npy / NAME=FILE.npz holding one array (repeatable, one per input)."""
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, path = _split_input_spec(spec, input_names)
        if name is None:
            arrays = _load_arrays(path)
            found = (read_inputs(path) if isinstance(arrays, dict)
                     else {_only_input(path, input_names): arrays})
        else:
            found = {name: _single_array(name, path)}
        for key, value in found.items():
            if key in feeds:
                raise PycError("E041", f"input {key!r} is given twice (again in {path})",
                               where=f"--inputs {spec}", hint="give each input once")
            feeds[key] = value
    return feeds


def _split_input_spec(spec: str, input_names: list[str]) -> tuple[str | None, Path]:
    """NAME=FILE when NAME is an input of the model (longest match: names may hold '='), else a
    plain file path."""
    for name in sorted(input_names, key=len, reverse=True):
        if spec.startswith(f"{name}=") and not Path(spec).is_file():
            return name, Path(spec[len(name) + 1:])
    name, sep, _ = spec.partition("=")
    if sep and not Path(spec).exists() and "/" not in name:
        raise PycError("E041", f"--inputs {spec}: the model has no input {name!r}",
                       where=f"model inputs are {sorted(input_names)}",
                       hint="use --inputs NAME=FILE.npy with a name from that list")
    return None, Path(spec)


def _only_input(path: Path, input_names: list[str]) -> str:
    if len(input_names) != 1:
        raise PycError("E040", f"{path} holds one array (.npy) but the model has "
                       f"{len(input_names)} inputs {input_names}", where=str(path),
                       hint="give one per input: --inputs NAME=FILE.npy (repeatable), or an "
                       ".npz with numpy.savez(path, name=array, ...)")
    return input_names[0]


def _single_array(name: str, path: Path) -> np.ndarray:
    arrays = _load_arrays(path)
    if isinstance(arrays, np.ndarray):
        return arrays
    if len(arrays) != 1:
        raise PycError("E040", f"--inputs {name}={path}: the archive holds {len(arrays)} arrays, "
                       "one is needed", where=str(path),
                       hint="save the one array with numpy.save(path, array), or pass the .npz "
                       "without NAME=")
    return next(iter(arrays.values()))


def write_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """Outputs as an .npz at exactly `path` (numpy would append .npz to a path without it)."""
    try:
        with open(path, "wb") as handle:
            np.savez(handle, **outputs)
    except OSError as exc:
        raise PycError("E022", f"cannot write outputs to {path}: {exc.strerror or exc}",
                       where=str(path), hint="choose another --output path") from exc


def random_inputs(model: Any, seed: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Random feeds matching the model and how each was drawn: floats ~ N(0,1), bools 0/1,
    integers within the range their use in the graph allows (a Gather table's rows, 0/1 for a
    mask; [0, 100) when nothing constrains them)."""
    from ..input_ranges import random_integers

    rng = np.random.default_rng(seed)
    feeds, drawn = {}, {}
    for spec in model.inputs:
        try:
            if is_float_numpy(spec.dtype):
                feeds[spec.name] = rng.standard_normal(spec.shape).astype(spec.dtype)
                drawn[spec.name] = "normal(0, 1)"
            elif spec.dtype == np.bool_:
                feeds[spec.name] = rng.integers(0, 2, spec.shape).astype(np.bool_)
                drawn[spec.name] = "false/true"
            else:
                found = (model.input_ranges or {}).get(spec.name)
                feeds[spec.name] = random_integers(rng, found, spec.shape, spec.dtype)
                drawn[spec.name] = (f"integers in [{found.low}, {found.high}): {found.why}"
                                    if found else "integers in [0, 100): no recorded range")
        except MemoryError:
            raise PycError("E049", f"cannot allocate a random input {spec.name!r} of shape "
                           f"{list(spec.shape)}", where=f"input {spec.name!r}",
                           hint="run it on a machine with more memory") from None
    return feeds, drawn


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--inputs", "input_specs", multiple=True, metavar="FILE|NAME=FILE",
              help="An .npz file with one array per model input, an .npy file for a model with "
                   "one input, or NAME=FILE.npy for one input (repeatable).")
@click.option("--random-inputs", "seed", type=click.IntRange(min=0), default=None,
              metavar="SEED", help="Use seeded random inputs instead of --inputs (SEED >= 0).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write outputs (keyed by output name) as an .npz archive at exactly this path.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed runs before the timed ones.")
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Time this many runs (default 1, or unbounded with --duration) and report "
                   "min/mean/p50/p90/p95/p99/max latency and throughput.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True),
              default=None, metavar="SECONDS",
              help="Time runs until this many seconds have passed (at least one run); with "
                   "--repeat, whichever limit is reached first ends the timing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--compare", "reference", type=click.Choice(["ort"]),
              help="Also run onnxruntime on the source model with the same inputs and report "
                   "per-output errors; exits non-zero (PYC-E043) when one is out of tolerance.")
@click.option("--per-node", is_flag=True,
              help="With --compare: compare every intermediate that exists after fusion and name "
                   "the first node that diverges (builds a debug copy in a temporary directory).")
@click.option("--profile", is_flag=True,
              help="Also time every kernel call (a CPU artifact's kernels rebuilt in a temporary "
                   "directory with a clock read after each call; --repeat runs, default 20) and "
                   "print the slowest calls and the time per kernel.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --compare: the source model, for artifacts built with --no-keep-source "
                   "(checked against the sha256 in the manifest).")
@click.option("--check-contract", is_flag=True,
              help="Measure every clause of the contract the artifact was built with "
                   "(--contract): the arena, a second run's output bytes, the error against "
                   "onnxruntime, the latency percentile over the timed runs (default 50 runs); "
                   "a broken clause exits non-zero (PYC-E063) naming the decisions behind it.")
@click.option("--rtol", type=click.FloatRange(min=0), default=None,
              help="With --compare: relative tolerance for floating outputs (default: float32 "
                   "1e-4, float16 2e-3, bfloat16 1.6e-2, float64 1e-7; integers and bools are exact).")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="With --compare: absolute tolerance for floating outputs (default: float32 "
                   "1e-5, float16 1e-3, bfloat16 8e-3, float64 1e-9).")
@reports_errors
def run(artifact: Path, input_specs: tuple[str, ...], seed: int | None, output_path: Path | None,
        warmup: int, repeat: int | None, duration_s: float | None, as_json: bool,
        reference: str | None, per_node: bool, profile: bool, model_path: Path | None,
        check_contract: bool, rtol: float | None, atol: float | None) -> None:
    """Run a built ARTIFACT (its hashes are verified before native code loads).

    The outputs come from a first, untimed run; then --warmup runs, then the timed runs.
    Percentiles are numpy's 'linear' ones; throughput is timed runs / their summed time.
    An artifact of several targets runs on the first whose guards pass here (PYC-W001 names
    each one skipped; --json's run_statistics count them)."""
    from ..runtime.timing import RunPlan, latency_stats

    if bool(input_specs) == (seed is not None):
        raise PycError("E050", "give exactly one of --inputs FILE.npz or --random-inputs SEED",
                       hint="e.g. pyc run artifact/ --inputs x.npz")
    _check_compare_options(reference, per_node, model_path, rtol, atol)
    if duration_s is not None and not math.isfinite(duration_s):  # click's range lets nan pass
        raise PycError("E050", f"--duration {duration_s} is not a number of seconds",
                       hint="e.g. --duration 10")
    promised = None
    if check_contract:
        from ..compare.contract_check import artifact_contract

        promised = artifact_contract(artifact)
        if promised.latency is not None and repeat is None and duration_s is None:
            repeat = CONTRACT_RUNS  # a percentile needs runs to be a percentile of
    model = _load_with_warnings(artifact)
    drawn: dict[str, str] = {}
    if input_specs:
        feeds = gather_inputs(input_specs, [spec.name for spec in model.inputs])
    else:
        feeds, drawn = random_inputs(model, seed or 0)
    _check_upper_bounds(model, feeds, per_node, profile)
    outputs = model.run(feeds)
    plan = RunPlan(warmup, repeat, duration_s)
    stats = {**latency_stats(model.time_runs(feeds, plan)), "warmup_runs": warmup}
    if model.telemetry is not None:  # PYC_TELEMETRY: the runs written now, not at exit
        model.telemetry.flush()
    if output_path is not None:
        write_outputs(output_path, outputs)
    comparison = None
    if reference is not None:  # the reference runs on the inputs the artifact just ran on
        from ..compare import CompareOptions, compare_run

        comparison = compare_run(artifact, feeds, outputs, CompareOptions(
            reference, per_node, model_path, rtol, atol))
    profiled = _profile(artifact, feeds, warmup, repeat) if profile else None
    kept = None
    if promised is not None:
        from ..compare.contract_check import check_run

        kept = check_run(artifact, model, feeds, outputs, stats, model_path)
    summary = {
        "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype)}
                    for name, v in outputs.items()},
        "latency_ms": stats,
        "arena_bytes": model.arena_bytes,
        "run_statistics": model.stats.to_json(),
    }
    if model.buckets is not None:  # the plan the shapes chose, what choosing it took
        summary["shape_plan"] = _shape_plan(model, feeds)
    if comparison is not None:
        summary["compare"] = comparison.to_json()
    if kept is not None:
        summary["contract"] = [result.to_json() for result in kept]
    if profiled is not None:
        summary["profile"] = profiled.to_json()
    if drawn:
        summary["random_inputs"] = drawn
    if output_path is not None:  # the exact file written (no .npz is appended): say which
        summary["output_file"] = str(output_path)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        for name, how in drawn.items():
            echo(f"random input {name}: {how}")
        _print_run(outputs, summary)
        if output_path is not None:
            echo(f"outputs written to {output_path} (an .npz archive"
                 f"{'' if output_path.suffix == '.npz' else ', no .npz suffix added'})")
        if profiled is not None:
            from ..compare.profile_report import print_profile

            print_profile(profiled, Console(width=160))
        if comparison is not None:
            from ..compare.report import print_report

            print_report(comparison, Console(width=160))
        for result in kept or []:
            echo(result.line())
    for result in kept or []:
        if not result.holds:
            raise result.error()
    if comparison is not None and not comparison.passed:
        raise PycError("E043", f"output(s) {', '.join(comparison.failing())} differ from "
                       f"{comparison.reference} beyond tolerance", where=str(artifact),
                       hint="see the first divergent node in the report" if per_node
                       else "rerun with --per-node to find the first node that diverges")


CONTRACT_RUNS = 50  # timed runs of --check-contract for a latency clause without --repeat


def _check_upper_bounds(model: Any, feeds: dict[str, np.ndarray], per_node: bool,
                        profile: bool) -> None:
    """--per-node and --profile rebuild the kernels with run functions that take no shapes: a
    model with symbolic dims runs there at its upper bounds only (issue #15)."""
    if not (per_node or profile) or getattr(model, "shaped", None) is None:
        return
    for spec in model.inputs:
        shape = tuple(np.shape(feeds[spec.name])) if spec.name in feeds else ()
        if shape != spec.shape:
            flag = "--per-node" if per_node else "--profile"
            raise PycError("E050", f"{flag} runs a model with symbolic dims at their upper bounds "
                           f"only: input {spec.name!r} is {list(shape)}, not {list(spec.shape)}",
                           where=flag, hint="give inputs at the upper bounds, or --random-inputs "
                           "(drawn at the upper bounds)")


def _profile(artifact: Path, feeds: dict[str, np.ndarray], warmup: int, repeat: int | None
             ) -> Any:
    """The per-call profile of `pyc run --profile` (after the artifact's files are verified)."""
    from ..artifact.reader import read_manifest, verify_files
    from ..runtime.profile import profile_run

    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    return profile_run(artifact, manifest, feeds, warmup, repeat or 20)


def _load_with_warnings(artifact: Path) -> Any:
    """api.load with its warnings (a fallback target taken, PYC-W001) printed on stderr."""
    from ..api import load

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", PycWarning)
        model = load(artifact)
    for warning in seen:
        click.echo(f"warning: {warning.message}", err=True)
    return model


def _check_compare_options(reference: str | None, per_node: bool, model_path: Path | None,
                           rtol: float | None, atol: float | None) -> None:
    given = [flag for flag, value in (("--per-node", per_node or None), ("--model", model_path),
                                      ("--rtol", rtol), ("--atol", atol)) if value is not None]
    if reference is None and given:
        raise PycError("E050", f"{', '.join(given)} only apply with --compare ort",
                       hint="e.g. pyc run artifact/ --random-inputs 0 --compare ort --per-node")


def _shape_plan(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """The plan a run of `feeds` goes to in an artifact with shape buckets, its arena, and the
    dispatch time: the median of 101 dispatches, in microseconds."""
    plan, _ = model.buckets.pick(feeds)
    times = sorted(model.buckets.pick(feeds)[1] for _ in range(101))
    chosen = model if plan == "generic" else model.buckets.model(plan)
    return {"plan": plan, "arena_bytes": chosen.arena_bytes, "dispatch_us": times[50],
            "buckets": sorted(model.buckets.table)}


def _print_run(outputs: dict[str, np.ndarray], summary: dict[str, Any]) -> None:
    from ..runtime.timing import format_stats

    for name, value in outputs.items():
        with np.errstate(all="ignore"):  # statistics of inf/NaN outputs are just printed
            mean, std = float(np.mean(value)), float(np.std(value))
        echo(f"{name}: {value.dtype}{list(value.shape)} mean {mean:.6g} std {std:.6g}")
    stats = summary["run_statistics"]
    if len(stats["targets"]) > 1 or stats["execution"] != "native":
        echo(f"target {stats['target']} of {', '.join(stats['targets'])} ({stats['execution']});"
             f" fallbacks {stats['fallback_count']}, guard misses {stats['guard_miss_count']}"
             + (f"; last fallback: {stats['last_fallback_reason']}"
                if stats["last_fallback_reason"] else ""))
    if "shape_plan" in summary:
        plan = summary["shape_plan"]
        echo(f"plan {plan['plan']} (buckets: {', '.join(plan['buckets'])}; else generic), arena "
             f"{plan['arena_bytes']} B, dispatch {plan['dispatch_us']:.2f} us")
    echo(format_stats(summary["latency_ms"]))


@main.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="Fix the shape of an input with symbolic dims (repeatable); without it, "
                   "unknown dims are checked at guessed sizes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@reports_errors
def check(model: Path, input_shapes: tuple[str, ...], as_json: bool) -> None:
    """Report every node of MODEL that PyC cannot compile, grouped by reason, with the share of
    nodes and FLOPs that are supported. Exits 1 when something is unsupported.

    Unknown dims without --input-shape are checked at guessed sizes (axis 0 as 1 and 2, other
    axes as 64 and 224); a problem that may come from the guess is listed as "needs
    --input-shape to decide" and does not fail the check (exit 0)."""
    from ..check import check_model
    from .check_report import print_check_report

    report = check_model(model, parse_input_shapes(input_shapes)[0])
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        print_check_report(report)
    if report.problems:
        sys.exit(1)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (with the memory timeline) here.")
@click.option("--what-if", "what_if", multiple=True, metavar="KEY=VALUE,...",
              help="Predict an alternative build without building it (repeatable: one per "
                   "alternative): mode=, threads=, memory-budget=, target=, winograd=, layout=, "
                   "kernel=NODE:CANDIDATE. The arena is exact (the planner is rerun), the "
                   "latency predicted from per-kernel timings and the calibrated cost model "
                   "(docs/planner.md, \"What-if\").")
@click.option("--measure", is_flag=True,
              help="With --what-if: first time the artifact's kernels here (a profiling copy "
                   "of its code is compiled in a temporary directory), and keep the timings for "
                   "later what-ifs on this machine.")
@click.option("--timings", "timings_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="With --what-if: the artifact's per-kernel timings, as "
                   "`pyc run ARTIFACT --random-inputs 0 --profile --json > FILE` writes them.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --what-if: the source model, for an artifact built without "
                   "--keep-source whose model is not beside it (checked by sha256).")
@reports_errors
def explain(artifact: Path, as_json: bool, html_path: Path | None, what_if: tuple[str, ...],
            measure: bool, timings_file: Path | None, model_path: Path | None) -> None:
    """Explain what the compiler did to ARTIFACT's model and why; with --what-if, predict
    what other build flags would give instead."""
    from ..explain import explain_data, explanation_html, print_explanation, report_console

    if what_if:
        _what_if(artifact, what_if, measure, timings_file, model_path, as_json, html_path)
        return
    given = [flag for flag, value in (("--measure", measure or None), ("--timings", timings_file),
                                      ("--model", model_path)) if value is not None]
    if given:
        raise PycError("E050", f"{', '.join(given)} only apply with --what-if",
                       hint="e.g. pyc explain ARTIFACT --what-if mode=memory_first --measure")
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
    print_explanation(data, report_console())


def _what_if(artifact: Path, texts: tuple[str, ...], measure: bool, timings_file: Path | None,
             model_path: Path | None, as_json: bool, html_path: Path | None) -> None:
    """`pyc explain --what-if`: the alternatives predicted beside the artifact."""
    from ..explain import report_console
    from ..whatif.report import print_what_if, what_if_data

    if html_path is not None:
        raise PycError("E050", "--html writes the explanation, not a what-if comparison",
                       hint="drop --html, or run `pyc explain --html` without --what-if")
    data = what_if_data(artifact, texts, measure, timings_file, model_path)
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    print_what_if(data, report_console())


@main.command(name="plan")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--compare-modes", is_flag=True,
              help="Plan the model in every built-in mode (and each --what-if) and rank them "
                   "by predicted latency, then arena; nothing is built.")
@click.option("--what-if", "what_if", multiple=True, metavar="KEY=VALUE,...",
              help="An alternative to plan besides (or, without --compare-modes, instead of) "
                   "the modes: mode=, threads=, memory-budget=, target=, winograd=, layout=, "
                   "kernel=NODE:CANDIDATE (repeatable).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=d0,d1,...",
              help="The shape of an input with symbolic dims (repeatable), as for `pyc build`.")
@click.option("--threads", type=click.IntRange(min=0, max=1024), default=0, show_default=True,
              metavar="N", help="Threads a run may use (0 = every core of this machine).")
@click.option("--cpu", default="native", show_default=True, metavar="NAME",
              help="CPU to plan for, as for `pyc build --cpu`.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@reports_errors
def plan_command(model: Path, compare_modes: bool, what_if: tuple[str, ...],
                 input_shapes: tuple[str, ...], threads: int, cpu: str, as_json: bool) -> None:
    """Plan MODEL for several alternatives and rank them by predicted latency and arena, without
    generating or compiling code (the what-if simulator; docs/planner.md, "What-if")."""
    from ..explain import report_console
    from ..whatif import simulate
    from ..whatif.report import compare_data, print_ranking
    from ..whatif.spec import Alternative, apply, parse_what_if

    if not compare_modes and not what_if:
        raise PycError("E050", "pyc plan needs --compare-modes or at least one --what-if",
                       hint="e.g. pyc plan model.onnx --compare-modes")
    shapes, _ = parse_input_shapes(input_shapes)
    changes = [parse_what_if(text) for text in what_if]
    setup = simulate.from_model(model, shapes, Alternative(threads=threads, label="base"), cpu)
    alts = (simulate.mode_alternatives(setup, changes) if compare_modes
            else [apply(setup.base, c) for c in changes])
    data = compare_data(setup, alts)
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    print_ranking(data, report_console())


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@reports_errors
def strip(artifact: Path) -> None:
    """Remove what only explaining needs from ARTIFACT (model.ir, the plan, decisions.jsonl,
    generated C, the kept source model), keeping what running needs; the manifest is updated."""
    from ..artifact.slim import strip_artifact

    removed = strip_artifact(artifact)
    echo(f"stripped {artifact}: removed {len(removed)} file(s)" if removed
         else f"{artifact} is already slim")


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
