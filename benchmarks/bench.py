"""PyC vs onnxruntime, side by side: latency (interleaved rounds) and working memory.

    python benchmarks/bench.py [--models mlp,cnn,transformer,lstm] [--batch 1,8] [--seq 64]
                               [--repeat 200] [--rounds 5] [--threads 1] [--mode balanced]
                               [--out benchmarks/results] [--name bench-cpu]

For every model and size it builds a PyC artifact, feeds both engines the same random inputs,
checks the outputs agree (np.allclose rtol=1e-4, atol=1e-5; no timing is reported for a
mismatch), then times `rounds` alternating rounds of `repeat` runs per engine and reports p50/p95
over all samples. Working memory is measured per engine and model in a fresh subprocess
(memprobe.py). Writes a rich table to stdout, OUT/NAME.json and OUT/NAME.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# numpy's OpenBLAS threads would compete with the engines for cores; set before importing numpy
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import pyc_cli  # noqa: E402
from pyc_cli.targets.cpu import toolchain  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "tests" / "models"
MEMPROBE = Path(__file__).resolve().with_name("memprobe.py")
RTOL, ATOL = 1e-4, 1e-5
ENGINES = ("pyc", "ort")
LABELS = {"pyc": "PyC", "ort": "ORT"}
# A fixed glibc mmap threshold: every allocation of a page or more gets its own mapping, whose
# pages count in RSS only once touched and leave it when freed. Without it, glibc's dynamic
# threshold serves arenas from heap pages freed earlier (already resident): deltas read ~0.
PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}
Timer = Callable[[int], list[float]]
console = Console() if sys.stdout.isatty() else Console(width=150)


# ---------------------------------------------------------------- cases and inputs


# exported with a static batch: one case at that batch, whatever --batch says
FIXED_BATCH = {"lstm": 2}


@dataclass(frozen=True)
class Case:
    model: str
    batch: int
    seq: int

    @property
    def label(self) -> str:
        suffix = f" s{self.seq}" if self.model == "transformer" else ""
        return f"{self.model} b{self.batch}{suffix}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "_")

    @property
    def onnx_path(self) -> Path:
        return MODELS_DIR / f"{self.model}.onnx"

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        b, s = self.batch, self.seq
        shapes: dict[str, dict[str, tuple[int, ...]]] = {
            "mlp": {"x": (b, 64)},
            "cnn": {"image": (b, 3, 32, 32)},
            "transformer": {"input_ids": (b, s), "attention_mask": (b, s)},
            "lstm": {"x": (b, 8, 16)},
        }
        return shapes[self.model]


def make_input(name: str, shape: tuple[int, ...], dtype: np.dtype,
               rng: np.random.Generator) -> np.ndarray:
    if name == "input_ids":
        return rng.integers(0, 1000, size=shape).astype(dtype)
    if name == "attention_mask":
        mask = np.ones(shape, dtype)
        mask[1::2, shape[1] * 3 // 4:] = 0  # every other row has a padded last quarter
        return mask
    return rng.standard_normal(shape).astype(dtype)


def make_feeds(specs: list[Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {s.name: make_input(s.name, tuple(s.shape), np.dtype(s.dtype), rng) for s in specs}


# ---------------------------------------------------------------- engines


class OrtRunner:
    """An onnxruntime session with preallocated outputs (io_binding), timed like PyC's
    CompiledModel.time_runs: one warm-up run, then one perf_counter sample per run."""

    def __init__(self, model: Path, threads: int, feeds: dict[str, np.ndarray]) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = {o.name: np.empty(0) for o in self.session.get_outputs()}
        self.binding = self.session.io_binding()
        for name, value in feeds.items():
            self.binding.bind_cpu_input(name, value)
        for name, value in zip(self.outputs, self.session.run(None, feeds), strict=True):
            buffer = np.empty_like(value)
            self.outputs[name] = buffer
            self.binding.bind_output(name, "cpu", 0, buffer.dtype, buffer.shape,
                                     buffer.ctypes.data)

    def run(self) -> dict[str, np.ndarray]:
        self.session.run_with_iobinding(self.binding)
        return {name: buffer.copy() for name, buffer in self.outputs.items()}

    def time_runs(self, repeat: int) -> list[float]:
        self.session.run_with_iobinding(self.binding)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self.session.run_with_iobinding(self.binding)
            times.append((time.perf_counter() - start) * 1e3)
        return times


# ---------------------------------------------------------------- measurements


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float
    samples: int
    round_p50_ms: list[float]

    @classmethod
    def of(cls, rounds: list[list[float]]) -> Latency:
        pooled = np.concatenate([np.asarray(r) for r in rounds])
        return cls(float(np.percentile(pooled, 50)), float(np.percentile(pooled, 95)),
                   float(pooled.mean()), float(pooled.min()), int(pooled.size),
                   [float(np.median(r)) for r in rounds])


@dataclass
class Agreement:
    ok: bool
    max_abs_err: float
    detail: str = ""


@dataclass
class CaseResult:
    case: str
    model: str
    batch: int
    seq: int | None
    input_shapes: dict[str, list[int]]
    status: str = "ok"  # ok | mismatch | error
    error: str = ""
    build_s: float = 0.0
    agreement: Agreement | None = None
    latency: dict[str, Latency] = field(default_factory=dict)
    ratio_p50: float | None = None  # ORT / PyC: > 1 means PyC is faster
    ratio_p95: float | None = None
    plan: dict[str, int] = field(default_factory=dict)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    mem_ratio: float | None = None  # ORT working / PyC working
    mem_ratio_vs_arena: float | None = None  # ORT working / PyC planned arena


def compare(pyc_out: dict[str, np.ndarray], ort_out: dict[str, np.ndarray]) -> Agreement:
    if set(pyc_out) != set(ort_out):
        return Agreement(False, float("inf"), f"outputs {sorted(pyc_out)} vs {sorted(ort_out)}")
    worst, bad = 0.0, []
    for name, ref in ort_out.items():
        got = pyc_out[name]
        if got.shape != ref.shape:
            return Agreement(False, float("inf"), f"{name}: shape {got.shape} vs {ref.shape}")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
        if not np.allclose(got, ref, rtol=RTOL, atol=ATOL):
            bad.append(name)
    return Agreement(not bad, worst, f"mismatch in {bad}" if bad else "")


def interleave(timers: dict[str, Timer], rounds: int, repeat: int) -> dict[str, list[list[float]]]:
    """`rounds` rounds of `repeat` runs per engine, alternating which engine goes first."""
    samples: dict[str, list[list[float]]] = {name: [] for name in timers}
    order = list(timers)
    for index in range(rounds):
        for name in order if index % 2 == 0 else order[::-1]:
            samples[name].append(timers[name](repeat))
    return samples


def probe_memory(engine: str, target: Path, inputs: Path, threads: int,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    command = [sys.executable, str(MEMPROBE), "--engine", engine, "--target", str(target),
               "--inputs", str(inputs), "--threads", str(threads), *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, **PROBE_ENV})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def safe_ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ---------------------------------------------------------------- one case


@dataclass(frozen=True)
class Settings:
    repeat: int
    rounds: int
    threads: int
    mode: str
    memory: bool
    seed: int


def build_case(case: Case, workdir: Path, mode: str, result: CaseResult) -> Path:
    artifact = workdir / f"{case.slug}.pyc"
    start = time.perf_counter()
    built = pyc_cli.build(case.onnx_path, artifact, mode=mode, input_shapes=case.input_shapes())
    result.build_s = time.perf_counter() - start
    result.plan = {"arena_bytes": built.plan.arena_bytes,
                   "no_reuse_bytes": built.plan.no_reuse_bytes,
                   "lower_bound_bytes": built.plan.lower_bound_bytes}
    return artifact


def time_case(artifact: Path, case: Case, settings: Settings, result: CaseResult,
              feeds_path: Path) -> None:
    model = pyc_cli.load(artifact)
    try:
        feeds = make_feeds(model.inputs, np.random.default_rng(settings.seed))
        np.savez(feeds_path, **feeds)
        runner = OrtRunner(case.onnx_path, settings.threads, feeds)
        result.agreement = compare(model.run(feeds), runner.run())
        if not result.agreement.ok:
            result.status = "mismatch"
            return
        timers: dict[str, Timer] = {"pyc": lambda n: model.time_runs(feeds, n),
                                    "ort": runner.time_runs}
        samples = interleave(timers, settings.rounds, settings.repeat)
        result.latency = {name: Latency.of(rounds) for name, rounds in samples.items()}
        result.ratio_p50 = result.latency["ort"].p50_ms / result.latency["pyc"].p50_ms
        result.ratio_p95 = result.latency["ort"].p95_ms / result.latency["pyc"].p95_ms
    finally:
        model.close()


def memory_case(artifact: Path, case: Case, threads: int, feeds_path: Path,
                result: CaseResult) -> None:
    targets = {"pyc": artifact, "ort": case.onnx_path}
    result.memory = {e: probe_memory(e, targets[e], feeds_path, threads) for e in ENGINES}
    ort_kib = result.memory["ort"].get("working_kib")
    pyc_kib = result.memory["pyc"].get("working_kib")
    result.mem_ratio = safe_ratio(ort_kib, pyc_kib)
    arena_kib = result.plan.get("arena_bytes", 0) / 1024
    result.mem_ratio_vs_arena = safe_ratio(ort_kib, arena_kib)


def run_case(case: Case, settings: Settings, workdir: Path) -> CaseResult:
    shapes = {k: list(v) for k, v in case.input_shapes().items()}
    result = CaseResult(case.label, case.model, case.batch,
                        case.seq if case.model == "transformer" else None, shapes)
    feeds_path = workdir / f"{case.slug}.npz"
    try:
        artifact = build_case(case, workdir, settings.mode, result)
        time_case(artifact, case, settings, result, feeds_path)
        if settings.memory:
            memory_case(artifact, case, settings.threads, feeds_path, result)
    except Exception as exc:  # report and go on with the next case
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
    return result


# ---------------------------------------------------------------- machine info


def first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return ""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0] if lines else ""


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def git_output(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip()


def pyc_sources() -> dict[str, Any]:
    """Which PyC was benchmarked: its location, the checkout's commit, and a sha256 over the
    package, templates and C runtime actually imported (equal hashes: the same compiler)."""
    package = Path(pyc_cli.__file__).resolve().parent
    roots = [package, *(package.parent / d for d in ("codegen_templates", "runtime_c"))]
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(package.parent)).encode())
                digest.update(path.read_bytes())
    return {"package": str(package), "checkout_commit": git_output("rev-parse", "HEAD"),
            "sources_sha256": digest.hexdigest()}


def machine_info(settings: Settings) -> dict[str, Any]:
    import matplotlib

    cc = toolchain.find_compiler()  # what pyc builds with
    return {
        "cpu_model": cpu_model(), "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)), "memory_gib": memory_total_gib(),
        "kernel": platform.release(), "python": platform.python_version(),
        "onnxruntime": ort.__version__, "numpy": np.__version__, "pyc": pyc_cli.__version__,
        "pyc_sources": pyc_sources(),
        "matplotlib": matplotlib.__version__, "cc": first_line([cc, "--version"]),
        "gcc": first_line(["gcc", "--version"]),
        "threads": settings.threads, "pyc_threads": 1, "ort_intra_op_threads": settings.threads,
        "ort_inter_op_threads": 1, "repeat": settings.repeat, "rounds": settings.rounds,
        "mode": settings.mode, "seed": settings.seed, "rtol": RTOL, "atol": ATOL,
        "ort_timing": "io_binding, preallocated outputs",
        "pyc_timing": "CompiledModel.time_runs, preallocated outputs",
        "memory_probe_env": PROBE_ENV,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "CC")},
    }


# ---------------------------------------------------------------- reporting


def fmt_ms(value: float) -> str:
    return f"{value * 1e3:.1f} µs" if value < 1 else f"{value:.3f} ms"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    style = "green" if value >= 1 else "red"
    return f"[{style}]{value:.2f}×[/{style}]"


def fmt_kib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def latency_table(results: list[CaseResult]) -> Table:
    table = Table(title="Latency (ORT/PyC > 1: PyC faster)")
    for column in ("case", "max |Δ|", "PyC p50", "PyC p95", "ORT p50", "ORT p95",
                   "ORT/PyC p50", "ORT/PyC p95"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        if r.status != "ok":
            err = f"{r.agreement.max_abs_err:.2e}" if r.agreement else ""
            why = r.error or (r.agreement.detail if r.agreement else "")
            table.add_row(r.case, err, f"[red]{r.status.upper()}[/red]", why, "", "", "", "")
            continue
        pyc, ortl = r.latency["pyc"], r.latency["ort"]
        table.add_row(r.case, f"{r.agreement.max_abs_err:.1e}" if r.agreement else "",
                      fmt_ms(pyc.p50_ms), fmt_ms(pyc.p95_ms), fmt_ms(ortl.p50_ms),
                      fmt_ms(ortl.p95_ms), fmt_ratio(r.ratio_p50), fmt_ratio(r.ratio_p95))
    return table


def memory_table(results: list[CaseResult]) -> Table:
    table = Table(title="Working memory in KiB: peak RSS while running − RSS after load, "
                        "fresh process per engine (ORT/PyC > 1: PyC smaller)")
    for column in ("case", "PyC arena (plan)", "PyC no-reuse (plan)", "PyC working",
                   "ORT working", "ORT/PyC working", "ORT/PyC arena", "PyC load", "ORT load"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        if not r.memory:
            continue
        pyc, ortm = r.memory["pyc"], r.memory["ort"]
        table.add_row(r.case, fmt_kib(r.plan.get("arena_bytes", 0) / 1024),
                      fmt_kib(r.plan.get("no_reuse_bytes", 0) / 1024),
                      fmt_kib(pyc.get("working_kib")), fmt_kib(ortm.get("working_kib")),
                      fmt_ratio(r.mem_ratio), fmt_ratio(r.mem_ratio_vs_arena),
                      fmt_kib(pyc.get("load_kib")), fmt_kib(ortm.get("load_kib")))
    return table


def print_report(info: dict[str, Any], results: list[CaseResult]) -> None:
    console.print(f"[bold]{info['cpu_model']}[/bold], {info['usable_cores']} usable cores, "
                  f"python {info['python']}, onnxruntime {info['onnxruntime']}, "
                  f"numpy {info['numpy']}, {info['cc']}")
    console.print(f"threads: PyC generated code is single-threaded; ORT intra_op_num_threads="
                  f"{info['threads']}, inter_op_num_threads=1. {info['rounds']} interleaved "
                  f"rounds × {info['repeat']} runs per engine, mode={info['mode']}.")
    console.print(latency_table(results))
    if any(r.memory for r in results):
        console.print(memory_table(results))
    for r in results:
        if r.status == "error":
            console.print(f"[red]{r.case}: {r.error}[/red]")


def to_json(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def write_json(path: Path, info: dict[str, Any], results: list[CaseResult]) -> None:
    payload = {"machine": info, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(to_json(payload), indent=2) + "\n")


# ---------------------------------------------------------------- picture


def plot_latency(ax: Any, results: list[CaseResult]) -> None:
    timed = [r for r in results if r.latency]
    x = np.arange(len(timed))
    for offset, engine, color in ((-0.2, "pyc", "tab:blue"), (0.2, "ort", "tab:orange")):
        p50 = np.array([r.latency[engine].p50_ms for r in timed])
        p95 = np.array([r.latency[engine].p95_ms for r in timed])
        ax.bar(x + offset, p50, 0.4, label=LABELS[engine], color=color,
               yerr=[np.zeros_like(p50), p95 - p50], capsize=3)
    for index, r in enumerate(timed):
        top = max(r.latency["pyc"].p95_ms, r.latency["ort"].p95_ms)
        ax.annotate(f"{r.ratio_p50:.2f}×", (index, top), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize="small")
    ax.set_xticks(x, [r.case for r in timed], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (bar p50, whisker p95; label ORT/PyC p50)")
    ax.set_title("Latency")
    ax.legend()


def plot_memory(ax: Any, results: list[CaseResult]) -> None:
    measured = [r for r in results if r.memory]
    x = np.arange(len(measured))
    series = (
        ("PyC arena (plan)", "tab:cyan", lambda r: r.plan.get("arena_bytes", 0) / 1024),
        ("PyC working (RSS)", "tab:blue", lambda r: r.memory["pyc"].get("working_kib", 0)),
        ("ORT working (RSS)", "tab:orange", lambda r: r.memory["ort"].get("working_kib", 0)),
    )
    for index, (label, color, get) in enumerate(series):
        values = np.array([get(r) or np.nan for r in measured], dtype=float)
        ax.bar(x + (index - 1) * 0.27, values, 0.27, label=label, color=color)
    ax.set_xticks(x, [r.case for r in measured], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("KiB (missing bar: 0, below RSS page resolution)")
    ax.set_title("Working memory")
    ax.legend(fontsize="small")


def write_plot(path: Path, info: dict[str, Any], results: list[CaseResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_memory = any(r.memory for r in results)
    fig, axes = plt.subplots(1, 2 if with_memory else 1, figsize=(13 if with_memory else 7, 5),
                             squeeze=False)
    plot_latency(axes[0][0], results)
    if with_memory:
        plot_memory(axes[0][1], results)
    fig.suptitle(f"PyC vs onnxruntime {info['onnxruntime']} — {info['cpu_model']}, "
                 f"{info['threads']} thread(s)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,transformer,lstm")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--seq", type=int, default=64, help="transformer sequence length")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per engine per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--mode", default="balanced",
                        choices=["latency_first", "balanced", "memory_first"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="bench-cpu", help="basename of the .json and .png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def cases_from(args: argparse.Namespace) -> list[Case]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if not (MODELS_DIR / f"{m}.onnx").exists()]
    if unknown:
        known = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
        raise SystemExit(f"unknown model(s) {unknown}; have {known}")
    batches = [int(b) for b in str(args.batch).split(",")]
    return [Case(m, b, args.seq) for m in models
            for b in ([FIXED_BATCH[m]] if m in FIXED_BATCH else batches)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(args.repeat, args.rounds, args.threads, args.mode,
                        not args.no_memory, args.seed)
    started = time.perf_counter()
    info = machine_info(settings)
    info["loadavg_start"] = list(os.getloadavg())
    results = []
    with tempfile.TemporaryDirectory(prefix="pyc-bench-") as workdir:
        for case in cases_from(args):
            console.print(f"[dim]… {case.label}[/dim]")
            results.append(run_case(case, settings, Path(workdir)))
    info["loadavg_end"] = list(os.getloadavg())
    if pyc_sources()["sources_sha256"] != info["pyc_sources"]["sources_sha256"]:
        info["pyc_sources_changed_during_run"] = True
        console.print("[yellow]warning: pyc_cli/runtime_c/templates changed during the run[/]")
    info["total_s"] = round(time.perf_counter() - started, 1)
    print_report(info, results)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / f"{args.name}.json"]
    write_json(written[0], info, results)
    if not args.no_plot:
        written.append(args.out / f"{args.name}.png")
        write_plot(written[1], info, results)
    console.print(f"wrote {', '.join(map(str, written))} ({info['total_s']} s)")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
