"""PyC vs onnxruntime (and OpenVINO f32), side by side: latency and memory, same threads.

    python benchmarks/bench.py --suite real [--threads 2] [--repeat 50] [--rounds 5]
                               [--models mlp,mlp_b64,resnet50,minilm,minilm_b8,ppocr_det,...]
    python benchmarks/bench.py --suite toy  [--models mlp,cnn,transformer,lstm] [--batch 1,8]
                               [--seq 64] [--repeat 200] [--rounds 5] [--threads 1]
    common: [--mode balanced] [--out benchmarks/results] [--name NAME] [--no-memory]

Two labelled suites: `real`, the models users deploy (benchmarks/real_models.py says where each
comes from; weights random where the source has none worth keeping), and `toy`, the small models
in tests/models/ (they measure call overhead, not kernels). For every case the PyC artifact is
built in another process (`pyc build --threads`), every engine gets the same random inputs and
runs in its own process (memprobe.py --serve: no shared heap or thread pool), with the same
thread count (PyC through PYC_NUM_THREADS, onnxruntime intra_op_num_threads with all graph
optimisations, OpenVINO's CPU plugin with INFERENCE_NUM_THREADS and INFERENCE_PRECISION_HINT=f32).
Outputs are checked against onnxruntime before timing (toy: rtol 1e-4, atol 1e-5; real: rtol
1e-3, atol 1e-3 x the output's scale; no timing is reported for a mismatch). Then `rounds`
rounds of one warm-up plus `repeat` timed runs per engine, the engine order alternating, give
p50/p95 over all samples and paired ratios (the median over rounds of each round's p50 ratio).
Peak and working memory come from one more fresh process per engine (memprobe.py). Writes a
rich table to stdout, OUT/NAME.json and OUT/NAME.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
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
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_models  # noqa: E402
from regression_gate import cpu_model  # noqa: E402

MODELS_DIR = ROOT / "tests" / "models"
MEMPROBE = Path(__file__).resolve().with_name("memprobe.py")
RTOL, ATOL = 1e-4, 1e-5  # toy models (real ones: REAL_RTOL, scaled atol)
REAL_RTOL = 1e-3
ENGINES = ("pyc", "ort", "openvino")
LABELS = {"pyc": "PyC", "ort": "ORT", "openvino": "OpenVINO f32"}
# real-model cases: real_models.MODELS key -> (label, batch)
REAL_CASES = {"mlp": ("mlp 512-2048-2048-512 b1", 1), "mlp_b64": ("mlp 512-2048-2048-512 b64", 64),
              "resnet50": ("resnet50 b1", 1), "minilm": ("minilm-l6 b1 s128", 1),
              "minilm_b8": ("minilm-l6 b8 s128", 8), "ppocr_det": ("pp-ocr det 320x320", 1),
              "ppocr_rec": ("pp-ocr rec 48x320", 1), "ppocr_cls": ("pp-ocr cls 48x192", 1),
              "silero": ("silero vad", 1)}
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
    suite: str = "toy"

    @property
    def label(self) -> str:
        if self.suite == "real":
            return REAL_CASES[self.model][0]
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


class Worker:
    """One engine with one model loaded, in its own process (memprobe.py --serve), answering
    `time N` and `outputs PATH` (and `memory N`) one JSON line at a time."""

    def __init__(self, engine: str, target: Path, inputs: Path, threads: int) -> None:
        self.engine = engine
        self.process = subprocess.Popen(
            [sys.executable, str(MEMPROBE), "--engine", engine, "--target", str(target),
             "--inputs", str(inputs), "--threads", str(threads), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=ROOT)
        self.read()  # {"ready": engine} once the model is loaded

    def read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            assert self.process.stderr is not None
            lines = self.process.stderr.read().strip().splitlines()
            raise RuntimeError(f"{self.engine} worker failed: {lines[-1] if lines else '?'}")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def time_runs(self, repeat: int) -> list[float]:
        return [float(v) for v in self.ask(f"time {repeat}")]

    def outputs(self, path: Path) -> list[np.ndarray]:
        self.ask(f"outputs {path}")
        with np.load(path) as data:
            return [data[f"arr_{k}"] for k in range(len(data.files))]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


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
    suite: str = "toy"
    status: str = "ok"  # ok | mismatch | error
    error: str = ""
    build_s: float = 0.0
    repeat: int = 0  # timed runs per engine per round (settings.repeat, or more: runs_per_round)
    agreement: Agreement | None = None
    agreements: dict[str, Agreement] = field(default_factory=dict)  # engine -> vs onnxruntime
    latency: dict[str, Latency] = field(default_factory=dict)
    ratio_p50: float | None = None  # ORT / PyC: > 1 means PyC is faster
    ratio_p95: float | None = None
    # OTHER / PyC per engine: of the pooled p50 and p95, and paired (median over rounds)
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    mem_ratio: float | None = None  # ORT working / PyC working
    mem_ratio_vs_arena: float | None = None  # ORT working / PyC planned arena


def compare(got_out: list[np.ndarray], ort_out: list[np.ndarray], real: bool) -> Agreement:
    """Outputs (in model order) against onnxruntime's, with the suite's tolerance."""
    if len(got_out) != len(ort_out):
        return Agreement(False, float("inf"), f"{len(got_out)} outputs vs {len(ort_out)}")
    worst, bad = 0.0, []
    for index, (got, ref) in enumerate(zip(got_out, ort_out)):
        if got.shape != ref.shape:
            return Agreement(False, float("inf"), f"output {index}: shape {got.shape} vs {ref.shape}")
        if got.size == 0:
            continue
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
        scale = float(np.max(np.abs(ref))) if np.issubdtype(ref.dtype, np.number) else 1.0
        rtol, atol = (REAL_RTOL, REAL_RTOL * max(1.0, scale)) if real else (RTOL, ATOL)
        if not np.allclose(got, ref, rtol=rtol, atol=atol):
            bad.append(index)
    return Agreement(not bad, worst, f"mismatch in outputs {bad}" if bad else "")


def paired_ratio(other: list[float], pyc: list[float]) -> float:
    """The median over rounds of other's p50 / PyC's p50 in that round (both engines timed
    back to back: a slow phase of the machine affects both)."""
    return float(np.median([o / p for o, p in zip(other, pyc)]))


# the pause before each engine's block of runs: the engine timed before it keeps its thread
# pool spinning for a while after its last run (onnxruntime's, OpenVINO's, libgomp's), and a
# 2-thread team started on those cores loses scheduler ticks: PP-OCR cls right after
# onnxruntime ran its first runs in 5-59 ms against 0.5-0.6 ms after a 0.3 s pause
SETTLE_S = 0.3


def interleave(timers: dict[str, Timer], rounds: int, repeat: int,
               settle_s: float = SETTLE_S) -> dict[str, list[list[float]]]:
    """`rounds` rounds of `repeat` runs per engine, alternating which engine goes first, each
    block after a `settle_s` pause (the previous engine's spinning threads go to sleep)."""
    samples: dict[str, list[list[float]]] = {name: [] for name in timers}
    order = list(timers)
    for index in range(rounds):
        for name in order if index % 2 == 0 else order[::-1]:
            time.sleep(settle_s)
            samples[name].append(timers[name](repeat))
    return samples


def probe_memory(engine: str, target: Path, inputs: Path, threads: int,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Peak and working RSS of one engine running one model, in a fresh process."""
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
    openvino: bool = True
    min_round_s: float = 0.25


def runs_per_round(reference: Timer, settings: Settings) -> int:
    """`settings.repeat` runs, or more where they would take under `settings.min_round_s` of
    onnxruntime's time: a block of 50 sub-millisecond runs lasts ~15 ms, and one scheduler hiccup
    then moves its median (the MLP b1's round p50s varied 0.24-0.93 ms). Every engine runs the same
    count, so the rounds stay paired."""
    typical = statistics.median(reference(5))
    return max(settings.repeat, min(20 * settings.repeat, math.ceil(settings.min_round_s / (typical / 1e3))))


def prepare_case(case: Case, workdir: Path, seed: int
                 ) -> tuple[Path, dict[str, tuple[int, ...]], dict[str, np.ndarray]]:
    """The case's .onnx, its input shapes and its random inputs."""
    rng = np.random.default_rng(seed)
    if case.suite == "real":
        path, shapes = real_models.MODELS[case.model](workdir, rng)
        return path, shapes, real_models.model_feeds(path, shapes, rng)
    shapes = case.input_shapes()
    session = ort.InferenceSession(str(case.onnx_path), providers=["CPUExecutionProvider"])
    dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    feeds = {i.name: make_input(i.name, shapes[i.name], np.dtype(dtypes[i.type]), rng)
             for i in session.get_inputs()}
    return case.onnx_path, shapes, feeds


def build_case(path: Path, shapes: dict[str, tuple[int, ...]], artifact: Path,
               settings: Settings, result: CaseResult) -> None:
    """`pyc build` in another process (its memory never counts for an engine)."""
    command = [sys.executable, "-m", "pyc_cli", "build", str(path), "-o", str(artifact), "-q",
               "--mode", settings.mode, "--threads", str(settings.threads), "--force"]
    for name, shape in shapes.items():
        command += ["--input-shape", f"{name}={','.join(map(str, shape))}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    result.build_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"pyc build failed: {done.stderr.strip()[-300:]}")
    plan = json.loads((artifact / "memory_plan.json").read_text())
    result.plan = {k: plan[k] for k in ("arena_bytes", "no_reuse_bytes", "lower_bound_bytes")}


def engines_for(settings: Settings) -> tuple[str, ...]:
    return tuple(e for e in ENGINES if e != "openvino" or settings.openvino)


def time_case(targets: dict[str, Path], case: Case, settings: Settings, result: CaseResult,
              feeds_path: Path, workdir: Path) -> None:
    workers = {}
    try:
        for engine in engines_for(settings):
            try:
                workers[engine] = Worker(engine, targets[engine], feeds_path, settings.threads)
            except RuntimeError as exc:
                if engine != "openvino":
                    raise
                result.error = f"OpenVINO not measured: {exc}"
        outputs = {e: w.outputs(workdir / f"{case.slug}-{e}-out.npz") for e, w in workers.items()}
        result.agreements = {e: compare(outputs[e], outputs["ort"], case.suite == "real")
                             for e in workers if e != "ort"}
        result.agreement = result.agreements["pyc"]
        if not result.agreement.ok:
            result.status = "mismatch"
            return
        timers = {e: w.time_runs for e, w in workers.items()
                  if e == "ort" or result.agreements[e].ok}
        result.repeat = runs_per_round(timers["ort"], settings)
        samples = interleave(timers, settings.rounds, result.repeat)
        result.latency = {name: Latency.of(rounds) for name, rounds in samples.items()}
        pyc = result.latency["pyc"]
        for engine, latency in result.latency.items():
            if engine != "pyc":
                result.ratios[engine] = {
                    "p50": latency.p50_ms / pyc.p50_ms, "p95": latency.p95_ms / pyc.p95_ms,
                    "paired_p50": paired_ratio(latency.round_p50_ms, pyc.round_p50_ms)}
        result.ratio_p50 = result.ratios["ort"]["p50"]
        result.ratio_p95 = result.ratios["ort"]["p95"]
    finally:
        for worker in workers.values():
            worker.close()


def memory_case(targets: dict[str, Path], settings: Settings, feeds_path: Path,
                result: CaseResult) -> None:
    engines = [e for e in engines_for(settings) if e in result.latency]
    result.memory = {e: probe_memory(e, targets[e], feeds_path, settings.threads) for e in engines}
    ort_kib = result.memory["ort"].get("working_kib")
    pyc_kib = result.memory["pyc"].get("working_kib")
    result.mem_ratio = safe_ratio(ort_kib, pyc_kib)
    arena_kib = result.plan.get("arena_bytes", 0) / 1024
    result.mem_ratio_vs_arena = safe_ratio(ort_kib, arena_kib)


def run_case(case: Case, settings: Settings, workdir: Path) -> CaseResult:
    result = CaseResult(case.label, case.model, case.batch,
                        case.seq if case.model == "transformer" else None, {}, case.suite)
    feeds_path = workdir / f"{case.slug}.npz"
    try:
        path, shapes, feeds = prepare_case(case, workdir, settings.seed)
        result.input_shapes = {k: list(v) for k, v in shapes.items()}
        np.savez(feeds_path, **feeds)
        artifact = workdir / f"{case.slug}.pyc"
        build_case(path, shapes, artifact, settings, result)
        targets = {"pyc": artifact, "ort": path, "openvino": path}
        time_case(targets, case, settings, result, feeds_path, workdir)
        if settings.memory and result.status == "ok":
            memory_case(targets, settings, feeds_path, result)
    except Exception as exc:  # report and go on with the next case
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
    return result


def geomean(values: list[float]) -> float | None:
    return float(np.exp(np.mean(np.log(values)))) if values else None


def summary(results: list[CaseResult]) -> dict[str, Any]:
    """Geometric means of OTHER / PyC p50 over the batch-1 cases (> 1: PyC faster), and
    whether PyC is slower than any engine on any case."""
    single = [r for r in results if r.status == "ok" and r.batch == 1]
    out: dict[str, Any] = {"batch1_cases": [r.case for r in single]}
    for engine in ENGINES[1:]:
        values = [r.ratios[engine]["paired_p50"] for r in single if engine in r.ratios]
        out[f"geomean_{engine}_over_pyc_p50"] = geomean([v for v in values if v])
        out[f"pyc_slower_than_{engine}_on"] = [r.case for r in results if engine in r.ratios
                                               and (r.ratios[engine]["paired_p50"] or 1) < 1]
    return out


# ---------------------------------------------------------------- machine info


def first_line(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return ""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0] if lines else ""


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


def openvino_version() -> str | None:
    if not openvino_available():
        return None
    import openvino

    return str(openvino.__version__)


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
        "openvino": openvino_version(),
        "threads": settings.threads, "pyc_threads": settings.threads,
        "ort_intra_op_threads": settings.threads, "ort_inter_op_threads": 1,
        "openvino_threads": settings.threads, "openvino_precision": "f32",
        "repeat": settings.repeat, "rounds": settings.rounds, "min_round_s": settings.min_round_s,
        "mode": settings.mode, "seed": settings.seed, "rtol": RTOL, "atol": ATOL,
        "real_rtol": REAL_RTOL, "real_atol": "real_rtol x max(1, max |output|)",
        "timing": "one process per engine and model (memprobe.py --serve), rounds interleaved "
                  "with alternating engine order, a 0.3 s pause before each engine's block (the previous "
                  "engine's thread pool stops spinning), one warm-up run per round, perf_counter per "
                  "run around the engine's Python call (outputs allocated per run by every engine)",
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


def latency_table(results: list[CaseResult], engines: tuple[str, ...]) -> Table:
    others = engines[1:]
    table = Table(title="Latency, ms (OTHER/PyC > 1: PyC faster; paired = median over rounds "
                        "of each round's p50 ratio)")
    columns = ["case", "max |Δ|", "PyC p50", "PyC p95"]
    for engine in others:
        columns += [f"{LABELS[engine]} p50", f"{LABELS[engine]}/PyC p50 (paired)"]
    for column in columns:
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        if r.status != "ok":
            err = f"{r.agreement.max_abs_err:.2e}" if r.agreement else ""
            why = r.error or (r.agreement.detail if r.agreement else "")
            table.add_row(r.case, err, f"[red]{r.status.upper()}[/red]", why[:60],
                          *[""] * (len(columns) - 4))
            continue
        pyc = r.latency["pyc"]
        row = [r.case, f"{r.agreement.max_abs_err:.1e}" if r.agreement else "",
               fmt_ms(pyc.p50_ms), fmt_ms(pyc.p95_ms)]
        for engine in others:
            if engine not in r.latency:
                row += ["n/a", "n/a"]
                continue
            ratio = r.ratios[engine]
            row += [fmt_ms(r.latency[engine].p50_ms),
                    f"{fmt_ratio(ratio['p50'])} ({fmt_ratio(ratio['paired_p50'])})"]
        table.add_row(*row)
    return table


def memory_table(results: list[CaseResult], engines: tuple[str, ...]) -> Table:
    table = Table(title="Memory in MiB: peak RSS while running (fresh process per engine, "
                        "interpreter and libraries included) and working = peak − RSS after load")
    columns = ["case", "PyC arena (plan)"]
    for engine in engines:
        columns += [f"{LABELS[engine]} peak", f"{LABELS[engine]} working"]
    for column in columns:
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        if not r.memory:
            continue
        row = [r.case, fmt_mib(r.plan.get("arena_bytes", 0) / 1024)]
        for engine in engines:
            probe = r.memory.get(engine, {})
            row += [fmt_mib(probe.get("peak_kib")), fmt_mib(probe.get("working_kib"))]
        table.add_row(*row)
    return table


def fmt_mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:,.1f}"


def print_report(info: dict[str, Any], results: list[CaseResult]) -> None:
    engines = tuple(info["engines"])
    console.print(f"[bold]{info['cpu_model']}[/bold], {info['usable_cores']} usable cores, "
                  f"python {info['python']}, onnxruntime {info['onnxruntime']}, "
                  f"openvino {info['openvino']}, numpy {info['numpy']}, {info['cc']}")
    console.print(f"suite {info['suite']}: {info['threads']} thread(s) for every engine; "
                  f"{info['rounds']} interleaved rounds × {info['repeat']}+ runs per engine "
                  f"(more where a round of onnxruntime's would last under {info.get('min_round_s', 0)} s), "
                  f"one process per engine and model, mode={info['mode']}.")
    console.print(latency_table(results, engines))
    if any(r.memory for r in results):
        console.print(memory_table(results, engines))
    summary_ = info.get("summary", {})
    for engine in engines[1:]:
        mean = summary_.get(f"geomean_{engine}_over_pyc_p50")
        if mean is not None:
            console.print(f"geometric mean over batch-1 cases, {LABELS[engine]}/PyC p50 "
                          f"(paired): {fmt_ratio(mean)}; PyC slower on: "
                          f"{summary_.get(f'pyc_slower_than_{engine}_on') or 'none'}")
    for r in results:
        if r.error:
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
    """The machine, the settings, the summary and every case."""
    payload = {"machine": info, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(to_json(payload), indent=2) + "\n")


# ---------------------------------------------------------------- picture


def plot_latency(ax: Any, results: list[CaseResult]) -> None:
    timed = [r for r in results if r.latency]
    x = np.arange(len(timed))
    colors = {"pyc": "tab:blue", "ort": "tab:orange", "openvino": "tab:green"}
    for index, engine in enumerate(ENGINES):
        p50 = np.array([r.latency[engine].p50_ms if engine in r.latency else np.nan for r in timed])
        p95 = np.array([r.latency[engine].p95_ms if engine in r.latency else np.nan for r in timed])
        ax.bar(x + (index - 1) * 0.27, p50, 0.27, label=LABELS[engine], color=colors[engine],
               yerr=[np.zeros_like(p50), p95 - p50], capsize=2)
    for index, r in enumerate(timed):
        top = max(v.p95_ms for v in r.latency.values())
        ax.annotate(f"{r.ratio_p50:.2f}×", (index, top), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize="small")
    ax.set_xticks(x, [r.case for r in timed], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (bar p50, whisker p95; label ORT/PyC p50)", fontsize="small")
    ax.set_title("Latency")
    ax.legend()


def plot_memory(ax: Any, results: list[CaseResult]) -> None:
    measured = [r for r in results if r.memory]
    x = np.arange(len(measured))
    colors = {"pyc": "tab:blue", "ort": "tab:orange", "openvino": "tab:green"}
    for index, engine in enumerate(ENGINES):
        values = np.array([r.memory.get(engine, {}).get("peak_kib") or np.nan
                           for r in measured], dtype=float) / 1024
        ax.bar(x + (index - 1) * 0.27, values, 0.27, label=f"{LABELS[engine]} peak RSS",
               color=colors[engine])
    ax.set_xticks(x, [r.case for r in measured], rotation=20, ha="right")
    ax.set_ylabel("MiB (peak RSS of the engine's own process)")
    ax.set_title("Peak memory")
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
    fig.suptitle(f"{info['suite']} models: PyC vs onnxruntime {info['onnxruntime']} and OpenVINO "
                 f"{info['openvino']} (f32) — {info['cpu_model']}, {info['threads']} thread(s) "
                 "each", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["real", "toy"], default="real")
    parser.add_argument("--models", default=None,
                        help=f"real: {','.join(REAL_CASES)}; toy: mlp,cnn,transformer,lstm")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--seq", type=int, default=64, help="transformer sequence length")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per engine per round (default: real 50, toy 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--min-round-s", type=float, default=0.25,
                        help="more runs per round for fast models, so that a round of onnxruntime's "
                             "lasts at least this long (at most 20x --repeat; every engine the same)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every engine (default: real 2, toy 1)")
    parser.add_argument("--mode", default="balanced",
                        choices=["latency_first", "balanced", "memory_first"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default=None,
                        help="basename of the .json and .png (default: bench-real / bench-cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--no-openvino", action="store_true")
    args = parser.parse_args(argv)
    real = args.suite == "real"
    args.models = args.models or (",".join(REAL_CASES) if real else "mlp,cnn,transformer,lstm")
    args.repeat = args.repeat or (50 if real else 200)
    args.threads = args.threads or (2 if real else 1)
    args.name = args.name or ("bench-real" if real else "bench-cpu")
    return args


def cases_from(args: argparse.Namespace) -> list[Case]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.suite == "real":
        unknown = [m for m in models if m not in REAL_CASES]
        if unknown:
            raise SystemExit(f"unknown real model(s) {unknown}; have {list(REAL_CASES)}")
        return [Case(m, REAL_CASES[m][1], 128, "real") for m in models]
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
                        not args.no_memory, args.seed, openvino_available() and not args.no_openvino,
                        args.min_round_s)
    started = time.perf_counter()
    info = machine_info(settings)
    info["loadavg_start"] = list(os.getloadavg())
    info["suite"] = args.suite
    info["engines"] = list(engines_for(settings))
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
    info["summary"] = summary(results)
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
