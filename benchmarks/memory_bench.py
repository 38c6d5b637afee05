"""Memory planner benchmark: PyC's three build modes side by side, and against onnxruntime.

    python benchmarks/memory_bench.py [--models densenet121,inception_v2,...] [--rounds 20]
                                      [--round-seconds 0.25] [--threads 1]
                                      [--out benchmarks/results] [--name memory-cpu]

For every model (bench_models.py) and every mode (latency_first, balanced, memory_first) it
builds an artifact and records the plan's arena, lower bound and no-reuse bytes and the schedule
chosen; checks each mode's outputs against onnxruntime (rtol 1e-4, atol 1e-5); times the three
modes (and ORT) in interleaved rounds, 1 thread; and measures working memory per mode and for
ORT (arena + memory pattern off, and at their defaults) in fresh processes with memprobe.py.
For every mode it also finds the plan's peak step and the blocks live there. Writes a rich
table to stdout, OUT/NAME.json and OUT/NAME.png. A model PyC cannot compile is reported with
its PYC error, and the run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench  # first: sets the BLAS thread variables before numpy is imported
import bench_models
import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.errors import PycError
from pyc_cli.planning.liveness import compute_liveness
from pyc_cli.planning.plan import WORKSPACE_SUFFIX, analyze_storage, storage_blocks
from pyc_cli.planning.policy import get_policy

MODES = ("latency_first", "balanced", "memory_first")
SHORT = {"latency_first": "LF", "balanced": "B", "memory_first": "MF"}
# memprobe.py options for each onnxruntime configuration measured
ORT_CONFIGS = {"ort_no_arena": ("--ort-no-arena",), "ort_default": ()}
ORT_LABELS = {"ort_no_arena": "ORT arena+pattern off", "ort_default": "ORT defaults"}
TARGETS = {"mf_reduction": 0.25, "mf_latency_cost": 0.10, "bound_ratio": 1.02,
           "at_bound_share": 0.80, "ort_reduction": 0.25}
console = Console() if sys.stdout.isatty() else Console(width=200)


# ---------------------------------------------------------------- results


@dataclass
class ModeResult:
    mode: str
    status: str = "ok"  # ok | unsupported | error | mismatch
    error: str = ""
    build_s: float = 0.0
    arena_bytes: int = 0
    lower_bound_bytes: int = 0
    no_reuse_bytes: int = 0
    schedule: str = ""
    algorithm: str = ""
    schedule_peaks: dict[str, int] = field(default_factory=dict)  # memory_first's candidates
    code_sha256: str = ""  # over the generated C sources
    same_code_as: str = ""  # an earlier mode whose generated C is identical
    agreement: bench.Agreement | None = None
    latency: bench.Latency | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    peak: dict[str, Any] = field(default_factory=dict)

    @property
    def bound_ratio(self) -> float | None:
        return self.arena_bytes / self.lower_bound_bytes if self.lower_bound_bytes else None


@dataclass
class ModelResult:
    model: str
    source: str
    note: str
    input_shapes: dict[str, list[int]]
    status: str = "ok"  # ok (every mode ok) | unsupported | error | mismatch
    error: str = ""
    prepare: dict[str, int] = field(default_factory=dict)
    modes: dict[str, ModeResult] = field(default_factory=dict)
    ort_latency: bench.Latency | None = None
    ort_memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeat: int = 0
    derived: dict[str, float | None] = field(default_factory=dict)

    def ok_modes(self) -> list[ModeResult]:
        return [r for r in self.modes.values() if r.status == "ok"]


def classify(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, PycError):
        return ("unsupported" if exc.code == "E007" else "error"), str(exc)
    return "error", f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- inputs


def onnx_feeds(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """The same seeded inputs bench.py makes, typed from the ONNX graph (PyC not needed)."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = shapes.get(value.name) or tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
        feeds[value.name] = bench.make_input(value.name, tuple(shape), np.dtype(dtype), rng)
    return feeds


# ---------------------------------------------------------------- peak analysis


def peak_breakdown(built: BuildResult, top: int = 6) -> dict[str, Any]:
    """The schedule step where the plan's live bytes peak, and the blocks live there (largest
    first): the storages of planner v2 (views, in-place results and concat slices merged)."""
    graph, plan = built.graph, built.plan
    liveness = compute_liveness(graph)
    storage = analyze_storage(graph, liveness, get_policy(plan.mode),
                              concat_in_place=bool(plan.concat_slices))
    blocks = storage_blocks(graph, storage, liveness, plan.alignment)
    if not blocks:
        return {}
    best_step, best_bytes = 0, -1
    for step in sorted({b.life.start for b in blocks}):
        live = sum(b.nbytes for b in blocks if b.life.start <= step <= b.life.end)
        if live > best_bytes:
            best_step, best_bytes = step, live
    producers = graph.producers()
    consumers = graph.consumers()
    live_blocks = sorted((b for b in blocks if b.life.start <= best_step <= b.life.end),
                         key=lambda b: -b.nbytes)
    rows = []
    for block in live_blocks:
        if block.name.endswith(WORKSPACE_SUFFIX):
            node_name = block.name[: -len(WORKSPACE_SUFFIX)]
            node = next(n for n in graph.nodes if n.name == node_name)
            what = f"kernel workspace of {node.op} {node_name}"
            shape: list[int] = []
        else:
            producer = producers.get(block.name)
            shape = list(graph.types[block.name].shape)
            users = sorted({u.op for u in consumers.get(block.name, [])})
            what = f"{producer.op if producer else '?'} output, read by {', '.join(users) or '-'}"
            members = storage.members.get(block.name, [])
            if len(members) > 1:
                what += f" (+{len(members) - 1} value(s) sharing it)"
        rows.append({"block": block.name, "bytes": block.nbytes, "what": what, "shape": shape,
                     "life": [block.life.start, block.life.end]})
    node = graph.nodes[best_step]
    kinds = {"workspace": sum(r["bytes"] for r in rows if r["block"].endswith(WORKSPACE_SUFFIX))}
    kinds["tensors"] = best_bytes - kinds["workspace"]
    return {"step": best_step, "steps": len(graph.nodes), "node": node.name, "op": node.op,
            "live_bytes": best_bytes, "matches_plan_bound": best_bytes == plan.lower_bound_bytes,
            "live_blocks": len(rows), "by_kind": kinds, "top": rows[:top]}


# ---------------------------------------------------------------- one model


@dataclass(frozen=True)
class Settings:
    rounds: int
    round_seconds: float
    min_repeat: int
    max_repeat: int
    threads: int
    memory: bool
    seed: int


def build_mode(path: Path, spec: bench_models.ModelSpec, mode: str, workdir: Path,
               result: ModeResult) -> BuildResult | None:
    start = time.perf_counter()
    try:
        built = pyc_cli.build(path, workdir / f"{spec.name}-{mode}.pyc", mode=mode,
                              input_shapes=spec.shapes)
    except Exception as exc:  # report and go on with the next mode / model
        result.status, result.error = classify(exc)
        return None
    result.build_s = round(time.perf_counter() - start, 2)
    plan = built.plan
    result.arena_bytes, result.lower_bound_bytes = plan.arena_bytes, plan.lower_bound_bytes
    result.no_reuse_bytes, result.schedule, result.algorithm = (plan.no_reuse_bytes, plan.schedule,
                                                                plan.algorithm)
    for decision in built.context.decisions:
        if decision.pass_name == "plan_memory" and decision.action == "schedule":
            result.schedule_peaks = dict(decision.extra.get("candidates", {}))
    result.peak = peak_breakdown(built)
    digest = hashlib.sha256()
    for source in sorted((built.artifact / "src").iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    result.code_sha256 = digest.hexdigest()
    return built


def time_modes(models: dict[str, Any], runner: bench.OrtRunner, feeds: dict[str, np.ndarray],
               settings: Settings, result: ModelResult) -> None:
    """Interleaved rounds over the modes and ORT; `repeat` sized so a round of one engine takes
    about `round_seconds` (at least min_repeat runs)."""
    estimate = min(min(m.time_runs(feeds, 2)) for m in models.values()) / 1e3
    repeat = int(settings.round_seconds / max(estimate, 1e-6))
    result.repeat = max(settings.min_repeat, min(settings.max_repeat, repeat))
    timers: dict[str, bench.Timer] = {mode: (lambda n, m=m: m.time_runs(feeds, n))
                                      for mode, m in models.items()}
    timers["ort"] = runner.time_runs
    samples = bench.interleave(timers, settings.rounds, result.repeat)
    for mode in models:
        result.modes[mode].latency = bench.Latency.of(samples[mode])
    result.ort_latency = bench.Latency.of(samples["ort"])


def probe_all(result: ModelResult, artifacts: dict[str, Path], onnx_path: Path, feeds_path: Path,
              threads: int) -> None:
    for mode, artifact in artifacts.items():
        result.modes[mode].memory = bench.probe_memory("pyc", artifact, feeds_path, threads)
    for config, extra in ORT_CONFIGS.items():
        result.ort_memory[config] = bench.probe_memory("ort", onnx_path, feeds_path, threads, extra)


def run_model(name: str, settings: Settings, workdir: Path) -> ModelResult:
    spec = bench_models.SPECS[name]
    result = ModelResult(name, spec.source, spec.note, {k: list(v) for k, v in spec.shapes.items()})
    result.modes = {mode: ModeResult(mode) for mode in MODES}
    try:
        path, result.prepare = bench_models.prepare(name, workdir, settings.seed)
        feeds = onnx_feeds(path, spec.shapes, settings.seed)
        feeds_path = workdir / f"{name}.npz"
        np.savez(feeds_path, **feeds)
        runner = bench.OrtRunner(path, settings.threads, feeds)
        reference = runner.run()
        built = {mode: build_mode(path, spec, mode, workdir, result.modes[mode]) for mode in MODES}
        for index, mode in enumerate(MODES):
            mine = result.modes[mode]
            mine.same_code_as = next((m for m in MODES[:index] if mine.code_sha256 and
                                      result.modes[m].code_sha256 == mine.code_sha256), "")
        loaded = {}
        try:
            for mode, b in built.items():
                if b is None:
                    continue
                model = pyc_cli.load(b.artifact)
                loaded[mode] = model
                mode_result = result.modes[mode]
                mode_result.agreement = bench.compare(model.run(feeds), reference)
                if not mode_result.agreement.ok:
                    mode_result.status, mode_result.error = "mismatch", mode_result.agreement.detail
            timed = {m: model for m, model in loaded.items() if result.modes[m].status == "ok"}
            if timed:
                time_modes(timed, runner, feeds, settings, result)
        finally:
            for model in loaded.values():
                model.close()
        if settings.memory:
            artifacts = {m: b.artifact for m, b in built.items()
                         if b is not None and result.modes[m].status == "ok"}
            probe_all(result, artifacts, path, feeds_path, settings.threads)
    except Exception as exc:  # the model itself failed (not one PyC mode): report, go on
        result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        return result
    bad = [r for r in result.modes.values() if r.status != "ok"]
    if bad:
        result.status = bad[0].status
        result.error = bad[0].error
    result.derived = derive(result)
    return result


# ---------------------------------------------------------------- derived figures


def working_kib(probe: dict[str, Any]) -> float | None:
    value = probe.get("working_kib") if probe else None
    return None if value is None else float(value)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def derive(r: ModelResult) -> dict[str, float | None]:
    lf, mf = r.modes["latency_first"], r.modes["memory_first"]
    out: dict[str, float | None] = {}
    if lf.status == "ok" and mf.status == "ok":
        out["mf_over_lf_arena"] = ratio(mf.arena_bytes, lf.arena_bytes)
        if lf.latency and mf.latency:
            # the same generated C runs the same machine code: any measured gap is noise
            out["mf_over_lf_p50_measured"] = ratio(mf.latency.p50_ms, lf.latency.p50_ms)
            out["mf_over_lf_p50"] = (1.0 if mf.code_sha256 == lf.code_sha256
                                     else out["mf_over_lf_p50_measured"])
            # cross-checks that resist a noisy machine: the fastest run of each, and the median
            # of per-round ratios (the two modes' runs in one round are close in time)
            out["mf_over_lf_min"] = ratio(mf.latency.min_ms, lf.latency.min_ms)
            out["mf_over_lf_paired"] = float(np.median(
                np.asarray(mf.latency.round_p50_ms) / np.asarray(lf.latency.round_p50_ms)))
    pyc_mf = working_kib(mf.memory) if mf.status == "ok" else None
    out["pyc_mf_working_kib"] = pyc_mf
    out["pyc_lf_working_kib"] = working_kib(lf.memory) if lf.status == "ok" else None
    for config in ORT_CONFIGS:
        ort_kib = working_kib(r.ort_memory.get(config, {}))
        out[f"{config}_working_kib"] = ort_kib
        out[f"pyc_mf_over_{config}"] = ratio(pyc_mf, ort_kib) if pyc_mf else None
    return out


def geomean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in kept) / len(kept)) if kept else None


def summarize(results: list[ModelResult]) -> dict[str, Any]:
    """Geometric means over the models every mode compiled and matched, and the targets."""
    complete = [r for r in results if r.status == "ok"]
    pairs = [m for r in complete for m in r.modes.values()]
    summary: dict[str, Any] = {"models": [r.model for r in complete]}
    g = {key: geomean([r.derived.get(key) for r in complete])
         for key in ("mf_over_lf_arena", "mf_over_lf_p50", "mf_over_lf_p50_measured",
                     "pyc_mf_over_ort_no_arena", "pyc_mf_over_ort_default")}
    for mode in MODES:
        g[f"bound_ratio_{mode}"] = geomean([r.modes[mode].bound_ratio for r in complete])
    summary["geomean"] = g
    ratios = [m.bound_ratio for m in pairs if m.bound_ratio is not None]
    at_bound = sum(1 for m in pairs if m.arena_bytes == m.lower_bound_bytes)
    summary["at_bound"] = {"builds": len(pairs), "at_bound": at_bound,
                           "models_all_modes_at_bound": sum(
                               all(m.arena_bytes == m.lower_bound_bytes for m in r.modes.values())
                               for r in complete)}

    def target(name: str, value: float | None, holds: bool | None, goal: str) -> dict[str, Any]:
        return {"name": name, "value": value, "goal": goal, "holds": holds}

    reduction = None if g["mf_over_lf_arena"] is None else 1 - g["mf_over_lf_arena"]
    cost = None if g["mf_over_lf_p50"] is None else g["mf_over_lf_p50"] - 1
    share = at_bound / len(pairs) if pairs else None
    summary["targets"] = [
        target("memory_first arena below latency_first (geomean)", reduction,
               None if reduction is None else reduction >= TARGETS["mf_reduction"], "≥ 25%"),
        target("memory_first latency cost vs latency_first (geomean p50; identical C "
               "counted as 0%)", cost,
               None if cost is None else cost <= TARGETS["mf_latency_cost"], "≤ 10%"),
        target("worst arena / lower bound (every model and mode)", max(ratios, default=None),
               None if not ratios else max(ratios) <= TARGETS["bound_ratio"], "≤ 1.02×"),
        target("builds with arena exactly at the lower bound", share,
               None if share is None else share >= TARGETS["at_bound_share"], "≥ 80%"),
    ]
    for config in ORT_CONFIGS:
        value = g[f"pyc_mf_over_{config}"]
        below = None if value is None else 1 - value
        summary["targets"].append(target(
            f"PyC memory_first measured working memory below {ORT_LABELS[config]} (geomean)",
            below, None if below is None else below >= TARGETS["ort_reduction"], "≥ 25%"))
        per_model = [r.derived.get(f"pyc_mf_over_{config}") for r in complete]
        summary[f"models_25pct_below_{config}"] = sum(
            1 for v in per_model if v is not None and v <= 1 - TARGETS["ort_reduction"])
    return summary


# ---------------------------------------------------------------- reporting


def kib(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1024:,.0f}"


def pct(value: float | None, good_if_positive: bool = True) -> str:
    if value is None:
        return "n/a"
    good = value >= 0 if good_if_positive else value <= 0
    style = "green" if good else "red"
    return f"[{style}]{value * 100:+.1f}%[/{style}]"


def fmt_ratio(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def short_reason(error: str) -> str:
    """'unknown op Resize' out of a PYC-E007 message, else the error's code."""
    if "unknown op " in error:
        return "op " + error.split("unknown op ", 1)[1].split(":", 1)[0]
    return error.split(":", 1)[0]


def plan_table(results: list[ModelResult], summary: dict[str, Any]) -> Table:
    table = Table(title="PyC memory plans, KiB (arena = planned bytes; bound = liveness lower "
                        "bound for that mode's own schedule)")
    columns = ["model", *(f"arena {SHORT[m]}" for m in MODES), *(f"bound {SHORT[m]}" for m in MODES),
               "arena/bound LF / B / MF", "MF schedule", "MF vs LF arena"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "MF schedule") else "right")
    for r in results:
        modes = [r.modes[m] for m in MODES]
        if not r.ok_modes():
            table.add_row(r.model, f"[red]{r.status.upper()}[/red]", short_reason(r.error),
                          *[""] * 7)
            continue
        cells = [kib(m.arena_bytes) if m.status == "ok" else m.status for m in modes]
        cells += [kib(m.lower_bound_bytes) if m.status == "ok" else "" for m in modes]
        cells.append(" / ".join(fmt_ratio(m.bound_ratio) for m in modes))
        mf_arena = r.derived.get("mf_over_lf_arena")
        table.add_row(r.model, *cells, r.modes["memory_first"].schedule,
                      pct(None if mf_arena is None else mf_arena - 1, good_if_positive=False))
    g = summary["geomean"]
    table.add_section()
    table.add_row("geomean", *[""] * 6,
                  " / ".join(fmt_ratio(g[f"bound_ratio_{m}"]) for m in MODES), "",
                  pct(None if g["mf_over_lf_arena"] is None else g["mf_over_lf_arena"] - 1,
                      good_if_positive=False))
    return table


def run_table(results: list[ModelResult], summary: dict[str, Any]) -> Table:
    table = Table(title="Latency (p50, 1 thread, interleaved) and measured working memory, KiB "
                        "(peak RSS while running − RSS after load, fresh process)")
    columns = ["model", "max |Δ|", *(f"p50 {SHORT[m]}" for m in MODES), "MF latency cost",
               "MF/LF min, paired",
               "ORT p50", "PyC MF meas.", "PyC LF meas.", "ORT off meas.", "ORT default meas.",
               "PyC MF vs ORT off", "PyC MF vs ORT default"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        modes = [r.modes[m] for m in MODES]
        worst = max((m.agreement.max_abs_err for m in modes if m.agreement), default=None)
        p50 = [bench.fmt_ms(m.latency.p50_ms) if m.latency else m.status for m in modes]
        cost = r.derived.get("mf_over_lf_p50_measured")
        cost_cell = pct(None if cost is None else cost - 1, good_if_positive=False)
        if r.modes["memory_first"].same_code_as == "latency_first" and cost is not None:
            cost_cell = f"0, same C ({(cost - 1) * 100:+.1f}%)"
        d = r.derived
        ort_off, ort_def = d.get("ort_no_arena_working_kib"), d.get("ort_default_working_kib")
        if not r.derived:  # nothing ran in PyC: still show ORT's memory
            ort_off = working_kib(r.ort_memory.get("ort_no_arena", {}))
            ort_def = working_kib(r.ort_memory.get("ort_default", {}))
        table.add_row(
            r.model, "n/a" if worst is None else f"{worst:.1e}", *p50,
            cost_cell, paired_cell(r), bench.fmt_ms(r.ort_latency.p50_ms) if r.ort_latency else "n/a",
            bench.fmt_kib(d.get("pyc_mf_working_kib")), bench.fmt_kib(d.get("pyc_lf_working_kib")),
            bench.fmt_kib(ort_off), bench.fmt_kib(ort_def),
            pct(None if d.get("pyc_mf_over_ort_no_arena") is None
                else d["pyc_mf_over_ort_no_arena"] - 1, good_if_positive=False),
            pct(None if d.get("pyc_mf_over_ort_default") is None
                else d["pyc_mf_over_ort_default"] - 1, good_if_positive=False))
    g = summary["geomean"]
    table.add_section()
    table.add_row("geomean", "", "", "", "",
                  pct(None if g["mf_over_lf_p50"] is None else g["mf_over_lf_p50"] - 1,
                      good_if_positive=False), "", "", "", "", "", "",
                  pct(None if g["pyc_mf_over_ort_no_arena"] is None
                      else g["pyc_mf_over_ort_no_arena"] - 1, good_if_positive=False),
                  pct(None if g["pyc_mf_over_ort_default"] is None
                      else g["pyc_mf_over_ort_default"] - 1, good_if_positive=False))
    return table


def paired_cell(r: ModelResult) -> str:
    low, paired = r.derived.get("mf_over_lf_min"), r.derived.get("mf_over_lf_paired")
    return "n/a" if low is None or paired is None else f"{low:.3f}, {paired:.3f}"


def target_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"Targets over {', '.join(summary['models'])}")
    for column in ("target", "goal", "measured", "holds"):
        table.add_column(column)
    for t in summary["targets"]:
        value = t["value"]
        shown = "n/a" if value is None else (f"{value:.3f}×" if "×" in t["goal"]
                                             else f"{value * 100:.1f}%")
        holds = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "n/a"}[t["holds"]]
        table.add_row(t["name"], t["goal"], shown, holds)
    return table


def print_peaks(results: list[ModelResult]) -> None:
    for r in results:
        for mode in ("latency_first", "memory_first"):
            peak = r.modes[mode].peak
            if not peak or r.modes[mode].status != "ok":
                continue
            console.print(f"[bold]{r.model} {mode}[/bold]: peak {kib(peak['live_bytes'])} KiB at "
                          f"step {peak['step']}/{peak['steps']} ({peak['op']} {peak['node']}), "
                          f"{peak['live_blocks']} blocks live, workspace "
                          f"{kib(peak['by_kind']['workspace'])} KiB")
            for row in peak["top"]:
                console.print(f"    {kib(row['bytes']):>7} KiB  {row['block']}  {row['shape']}  "
                              f"{row['what']}  live {row['life'][0]}–{row['life'][1]}")


def print_report(info: dict[str, Any], results: list[ModelResult], summary: dict[str, Any]) -> None:
    console.print(f"[bold]{info['cpu_model']}[/bold], {info['usable_cores']} usable cores, "
                  f"python {info['python']}, onnxruntime {info['onnxruntime']}, {info['cc']}")
    console.print(f"{info['rounds']} interleaved rounds, about {info['round_seconds']} s per engine "
                  f"per round; 1 thread (PyC), ORT intra_op={info['threads']}, inter_op=1")
    console.print(plan_table(results, summary))
    console.print(run_table(results, summary))
    console.print(target_table(summary))
    measured = summary["geomean"]["mf_over_lf_p50_measured"]
    if measured is not None:
        console.print(f"memory_first vs latency_first p50 as measured, identical C included: "
                      f"{(measured - 1) * 100:+.1f}% (geomean)")
    print_peaks(results)
    for r in results:
        if r.status != "ok":
            console.print(f"[red]{r.model}: {r.status}: {r.error}[/red]")


# ---------------------------------------------------------------- picture


def write_plot(path: Path, info: dict[str, Any], results: list[ModelResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    planned = [r for r in results if r.ok_modes()]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    x = np.arange(len(planned))
    colors = {"latency_first": "tab:red", "balanced": "tab:purple", "memory_first": "tab:blue"}
    ax = axes[0]
    for index, mode in enumerate(MODES):
        arena = [r.modes[mode].arena_bytes / 2**20 if r.modes[mode].status == "ok" else np.nan
                 for r in planned]
        bound = [r.modes[mode].lower_bound_bytes / 2**20 if r.modes[mode].status == "ok" else np.nan
                 for r in planned]
        ax.bar(x + (index - 1) * 0.27, arena, 0.27, color=colors[mode], label=f"arena {mode}")
        ax.scatter(x + (index - 1) * 0.27, bound, color="black", marker="_", s=120, zorder=3,
                   label="lower bound" if index == 0 else None)
    ax.set_xticks(x, [r.model for r in planned], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylabel("MiB (planned)")
    ax.set_title("Planned arena per mode")
    ax.legend(fontsize="small")

    ax = axes[1]
    timed = [r for r in planned if r.modes["latency_first"].latency]
    xt = np.arange(len(timed))
    for index, mode in enumerate(MODES):
        values = [r.modes[mode].latency.p50_ms / r.modes["latency_first"].latency.p50_ms
                  if r.modes[mode].latency else np.nan for r in timed]
        ax.bar(xt + (index - 1) * 0.27, values, 0.27, color=colors[mode], label=mode)
    ax.axhline(1.10, color="gray", linestyle="--", linewidth=1, label="+10%")
    ax.set_ylim(0.7, 1.3)
    ax.set_xticks(xt, [r.model for r in timed], rotation=20, ha="right")
    ax.set_ylabel("p50 / latency_first p50")
    ax.set_title("Latency relative to latency_first")
    ax.legend(fontsize="small")

    ax = axes[2]
    measured = [r for r in results if r.ort_memory]
    xm = np.arange(len(measured))
    series = (("PyC memory_first", "tab:blue", lambda r: r.derived.get("pyc_mf_working_kib")),
              ("PyC latency_first", "tab:red", lambda r: r.derived.get("pyc_lf_working_kib")),
              ("ORT arena+pattern off", "tab:orange",
               lambda r: working_kib(r.ort_memory.get("ort_no_arena", {}))),
              ("ORT defaults", "tab:brown",
               lambda r: working_kib(r.ort_memory.get("ort_default", {}))))
    for index, (label, color, get) in enumerate(series):
        values = np.array([(get(r) or np.nan) / 1024 for r in measured], dtype=float)
        ax.bar(xm + (index - 1.5) * 0.2, values, 0.2, color=color, label=label)
    ax.set_xticks(xm, [r.model for r in measured], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylabel("MiB (peak RSS − RSS after load)")
    ax.set_title("Measured working memory (no PyC bar: unsupported)")
    ax.legend(fontsize="small")
    fig.suptitle(f"PyC memory planner modes vs onnxruntime {info['onnxruntime']} — "
                 f"{info['cpu_model']}, 1 thread", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(bench_models.DEFAULT_MODELS),
                        help=f"comma-separated, of {', '.join(bench_models.SPECS)}")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--round-seconds", type=float, default=0.25,
                        help="target time per engine per round (sets the runs per round)")
    parser.add_argument("--min-repeat", type=int, default=2)
    parser.add_argument("--max-repeat", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--out", type=Path, default=bench.ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="memory-cpu", help="basename of the .json and .png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in bench_models.SPECS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; have {sorted(bench_models.SPECS)}")
    settings = Settings(args.rounds, args.round_seconds, args.min_repeat, args.max_repeat,
                        args.threads, not args.no_memory, args.seed)
    started = time.perf_counter()
    info = bench.machine_info(bench.Settings(0, args.rounds, args.threads, "all", settings.memory,
                                             args.seed))
    info.pop("repeat")
    info.update(round_seconds=args.round_seconds, min_repeat=args.min_repeat,
                max_repeat=args.max_repeat, modes=list(MODES),
                ort_memory_configs={k: list(v) for k, v in ORT_CONFIGS.items()},
                loadavg_start=list(os.getloadavg()))
    results = []
    with tempfile.TemporaryDirectory(prefix="pyc-membench-") as workdir:
        for name in names:
            console.print(f"[dim]… {name}[/dim]")
            results.append(run_model(name, settings, Path(workdir)))
    info["loadavg_end"] = list(os.getloadavg())
    if bench.pyc_sources()["sources_sha256"] != info["pyc_sources"]["sources_sha256"]:
        info["pyc_sources_changed_during_run"] = True
        console.print("[yellow]warning: pyc_cli/runtime_c/templates changed during the run[/]")
    info["total_s"] = round(time.perf_counter() - started, 1)
    summary = summarize(results)
    print_report(info, results, summary)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / f"{args.name}.json"]
    payload = {"machine": info, "summary": summary, "results": [asdict(r) for r in results]}
    written[0].write_text(json.dumps(bench.to_json(payload), indent=2) + "\n")
    if not args.no_plot:
        written.append(args.out / f"{args.name}.png")
        write_plot(written[1], info, results)
    console.print(f"wrote {', '.join(map(str, written))} ({info['total_s']} s)")
    failed = [r for r in results if r.status in ("error", "mismatch")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
