"""The what-if simulator against real builds (issue #16, point 1; `make bench-whatif`).

    python benchmarks/bench_whatif.py [--quick | --real | --models a,b] [--work DIR] [--rounds 10]
                                      [--out-name whatif]

A fixed matrix of (model, alternative A, alternative B) pairs over models the repo makes in
seconds (tests/models, the 512-2048-2048-512 MLP of benchmarks/real_models.py at batch 1 and 64)
and the real benchmark models of `bench.py --suite real` (ResNet-50 b1, MiniLM-L6 b1 seq 128,
PP-OCR det and rec, obtained by benchmarks/real_models.py; the figures are reported for them
apart too),
with alternatives over the mode, threads, a memory budget (60% of the latency_first arena), the
Winograd convolutions and a kernel override (the slowest node of A on its next candidate). For
each pair, A is built and its kernels profiled (`pyc explain --what-if --measure` does the same);
the simulator then predicts A and B from A's timings, without building B. Every alternative is
then built, and the built ones of a model are timed in interleaved rounds (p50 of every timed
run). Reported:
- winner agreement: the predicted faster of A and B is the measured faster (bar >= 80%); also
  over the decisive pairs, whose measured latencies differ by more than the noise band;
- latency within 20%: the share of the predicted builds (each pair's B, predicted without a
  build) whose predicted latency is within 20% of the measured one (bar >= 80%);
- a threads= alternative is predicted as `pyc explain --what-if --measure` does: A's artifact
  is also timed and profiled at B's team size (PYC_NUM_THREADS, a run-time setting: no build),
  in the same rounds; the model-only figures (from A's one-thread profile through the Amdahl
  and load model) are reported beside, and the figures without the threads pairs;
- arena exact: the predicted arena equals the built one.
Writes benchmarks/results/OUT.json and OUT.md. Runs with the calibration store in the work
directory (fresh each run: only this run's profiles calibrate), PYC_NUM_THREADS unset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from pyc_cli.api import build, load  # noqa: E402
from pyc_cli.artifact.reader import read_manifest  # noqa: E402
from pyc_cli.errors import PycError  # noqa: E402
from pyc_cli.passes import latency_model as cost  # noqa: E402
from pyc_cli.runtime.debug_build import compile_variant, read_plan  # noqa: E402
from pyc_cli.runtime.native import TensorSpec  # noqa: E402
from pyc_cli.runtime.profile import ProfiledModel, profile_sources  # noqa: E402
from pyc_cli.runtime.profile import summarize as summarize_profile  # noqa: E402
from pyc_cli.runtime.timing import RunPlan  # noqa: E402
from pyc_cli.whatif import simulate  # noqa: E402
from pyc_cli.whatif.spec import Alternative, apply, parse_what_if  # noqa: E402

MODELS_DIR = ROOT / "tests" / "models"
TIE = 0.03  # measured latencies closer than this (relative) are a tie: no winner to agree on


@dataclass(frozen=True)
class ModelCase:
    name: str
    shapes: dict[str, tuple[int, ...]]
    source: str  # tests:<file>, mlp:<batch> or real:<real_models.MODELS key>
    winograd: bool = False  # has 3x3 convs a Winograd pair can change
    real: bool = False  # one of the real benchmark models (bench.py --suite real)


CASES = (
    ModelCase("cnn", {"image": (1, 3, 32, 32)}, "tests:cnn.onnx", True),
    ModelCase("mobilenet", {}, "tests:mobilenet.onnx"),
    ModelCase("transformer", {"input_ids": (1, 64), "attention_mask": (1, 64)},
              "tests:transformer.onnx"),
    ModelCase("mlp512_b1", {}, "mlp:1", real=True),
    ModelCase("mlp512_b64", {}, "mlp:64", real=True),
    ModelCase("unet", {"image": (1, 3, 128, 128)}, "tests:unet.onnx", True),
    ModelCase("lstm", {}, "tests:lstm.onnx"),
    ModelCase("cnn_b8", {"image": (8, 3, 32, 32)}, "tests:cnn.onnx", True),
    # the real models of `bench.py --suite real` (benchmarks/real_models.py obtains them)
    ModelCase("resnet50_b1", {}, "real:resnet50", True, real=True),
    ModelCase("minilm_b1_s128", {}, "real:minilm", real=True),
    ModelCase("ppocr_det", {}, "real:ppocr_det", True, real=True),
    ModelCase("ppocr_rec", {}, "real:ppocr_rec", True, real=True),
)
QUICK = ("cnn", "mobilenet", "transformer", "mlp512_b64")
REAL = tuple(c.name for c in CASES if c.real)


def model_path(case: ModelCase, work: Path) -> tuple[Path, dict[str, tuple[int, ...]]]:
    kind, _, what = case.source.partition(":")
    if kind == "tests":
        return MODELS_DIR / what, case.shapes
    import real_models

    if kind == "real":
        return real_models.MODELS[what](work, np.random.default_rng(0))
    return real_models._mlp(work, np.random.default_rng(0), batch=int(what))


def _missing(case: ModelCase) -> str | None:
    kind, _, what = case.source.partition(":")
    if kind != "real":
        return None
    import real_models

    return real_models.unavailable(what)


def pairs_for(case: ModelCase) -> list[tuple[str, str]]:
    """(A, B) as --what-if texts over the base (balanced, one thread); `kernel` and `budget`
    are filled in once A is built (they depend on its plan)."""
    pairs = [("mode=balanced", "mode=memory_first"), ("mode=balanced", "mode=latency_first"),
             ("mode=latency_first", "mode=memory_first"), ("mode=balanced", "threads=2"),
             ("mode=balanced", "kernel=@slowest"), ("mode=latency_first", "memory-budget=@60%")]
    if case.winograd:
        pairs.append(("mode=balanced", "winograd=off"))
    return pairs


class Bench:
    def __init__(self, work: Path, rounds: int) -> None:
        self.work = work
        self.rounds = rounds
        self.built: dict[tuple[str, str], dict[str, Any]] = {}  # (model, describe) -> record

    def build(self, case: ModelCase, model: Path, shapes: dict[str, Any],
              alt: Alternative) -> dict[str, Any]:
        key = (case.name, alt.describe())
        if key in self.built:
            return self.built[key]
        out = self.work / case.name / f"b{len([k for k in self.built if k[0] == case.name])}.pyc"
        setup = simulate.from_model(model, shapes, alt)
        tuning = simulate.build_tuning(setup, alt)
        started = time.monotonic()
        result = build(model, out, input_shapes=shapes, cache=False, force=True, tuning=tuning,
                       **alt.build_options())
        record = {"artifact": out, "arena_bytes": result.plan.arena_bytes,
                  "mode": result.plan.mode, "build_s": time.monotonic() - started,
                  "alternative": alt.describe()}
        self.built[key] = record
        return record

    def measure(self, model_name: str, profiled: list[str], teams: list[tuple[str, int]]
                ) -> tuple[dict[str, float], dict[str, Any]]:
        """p50 of every timed run of each built alternative of a model, and the per-call profile
        of each alternative in `profiled`, all in the same interleaved rounds (on a shared
        machine the load drifts: A's profile must see the load B's timing sees). Each (A, N)
        of `teams` is A's artifact run at N threads (PYC_NUM_THREADS: what `--measure` times
        for a threads= alternative), timed and profiled under key `A@N`."""
        records = [r for (name, _), r in self.built.items() if name == model_name]
        units = [(r["alternative"], r, None) for r in records] + \
            [(f"{alt}@{n}", self.built[(model_name, alt)], n) for alt, n in teams]
        loaded, live = [], {}
        for key, r, threads in units:
            with _threads(threads):
                loaded.append((key, r, load(r["artifact"])))
                if key in profiled or threads is not None:
                    live[key] = LiveProfile(r["artifact"])
        samples: dict[str, list[float]] = {key: [] for key, _, _ in loaded}
        spread: dict[str, list[float]] = {key: [] for key, _, _ in loaded}
        try:
            feeds = {key: simulate.random_feeds(m) for key, _, m in loaded}
            runs = {}
            for key, _, m in loaded:  # about 0.05 s of runs per round and build
                one = float(np.median(m.time_runs(feeds[key], RunPlan(2, 5))))
                runs[key] = max(3, min(200, int(0.05 / max(one, 1e-6) * 1000)))
            order = np.random.default_rng(0)
            for _ in range(self.rounds):  # each round in another (seeded) order: no position bias
                for index in order.permutation(len(loaded)):
                    key, _, m = loaded[index]
                    times = m.time_runs(feeds[key], RunPlan(1, runs[key]))
                    samples[key] += times
                    spread[key].append(float(np.median(times)))
                    if key in live:
                        live[key].run(feeds[key], runs[key])
        finally:
            for _, _, m in loaded:
                m.close()
            for profile in live.values():
                profile.close()
        for r in records:  # the noise: the spread of the rounds' p50s, relative
            q25, q50, q75 = np.percentile(spread[r["alternative"]], [25, 50, 75])
            r["noise"] = float((q75 - q25) / q50) if q50 else 0.0
            r["rounds_p50"] = spread[r["alternative"]]  # in round order, for paired ratios
        return ({key: float(np.median(times)) for key, times in samples.items()},
                {key: profile.result() for key, profile in live.items()})


class _threads:
    """PYC_NUM_THREADS set to `threads` while a model is created (None: as it is)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.saved: str | None = None

    def __enter__(self) -> None:
        self.saved = os.environ.get("PYC_NUM_THREADS")
        if self.threads is not None:
            os.environ["PYC_NUM_THREADS"] = str(self.threads)

    def __exit__(self, *_: object) -> None:
        if self.saved is None:
            os.environ.pop("PYC_NUM_THREADS", None)
        else:
            os.environ["PYC_NUM_THREADS"] = self.saved


class LiveProfile:
    """The per-call profile of `pyc run --profile`, kept loaded so that its runs can be spread
    over the measurement rounds."""

    def __init__(self, artifact: Path) -> None:
        manifest = read_manifest(artifact)
        self.source = read_plan(artifact, manifest)
        normal, timed, count = profile_sources(self.source, manifest)
        self.work = Path(tempfile.mkdtemp(prefix="pyc-whatif-profile-"))
        library = compile_variant(artifact, manifest, normal, timed, self.work)
        self.model = ProfiledModel(library, manifest["symbol_prefix"], artifact / "weights.bin",
                                   [TensorSpec.from_manifest(e) for e in manifest["inputs"]],
                                   [TensorSpec.from_manifest(e) for e in manifest["outputs"]],
                                   count)
        self.rows: list[np.ndarray] = []
        self.profile: dict[str, Any] | None = None

    def run(self, feeds: dict[str, np.ndarray], runs: int) -> None:
        self.rows.append(self.model.step_times(feeds, 1, runs))

    def close(self) -> None:
        self.profile = summarize_profile(self.source, np.concatenate(self.rows)).to_json()
        self.model.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def result(self) -> dict[str, Any]:
        assert self.profile is not None
        return self.profile


def resolve(text: str, setup: simulate.Setup) -> str | None:
    """Fill in `kernel=@slowest` (of A's nodes with another applicable candidate, the one the
    cost model prices highest, on the candidate it ranks next) and `memory-budget=@60%` (of
    the latency_first arena); None where the model has no such alternative."""
    if text == "kernel=@slowest":
        graph, _ = simulate.plan(setup, setup.base)
        target = setup.target(setup.base)
        options = []
        for node in graph.nodes:
            chosen = target.chosen(node)
            if chosen is None:
                continue
            others = sorted((c.cost(node, graph), c.name) for c in target.candidates(node, graph)
                            if c.name != chosen.name)
            if others:
                options.append((-chosen.cost(node, graph), node.name, others[0][1]))
        if not options:
            return None
        _, node_name, candidate = min(options)
        return f"kernel={node_name}:{candidate}"
    if text == "memory-budget=@60%":
        graph, ctx = simulate.plan(setup, replace(setup.base, mode="latency_first",
                                                  memory_budget=None, mode_given=True))
        budget = int(0.6 * ctx.artifacts["memory_plan"].arena_bytes)
        try:
            simulate.plan(setup, replace(setup.base, memory_budget=budget, mode_given=False))
        except PycError:
            return None  # no mode fits
        return f"memory-budget={budget}"
    return text


def run_case(bench: Bench, case: ModelCase, rows: list[dict[str, Any]],
             tune_s: float = 0.0) -> None:
    model, shapes = model_path(case, bench.work)
    base = Alternative(mode="balanced", threads=1, label="base")
    started = time.monotonic()
    if tune_s > 0:  # `pyc build --tune` first: the tuning database then serves every build
        build(model, bench.work / case.name / "tuned.pyc", input_shapes=shapes, cache=False,
              force=True, threads=1, tune=True, tune_budget=tune_s,
              tuning_db=Path(os.environ["PYC_TUNING_DB"]))
    pairs = []
    for text_a, text_b in pairs_for(case):
        alt_a = apply(base, parse_what_if(text_a))
        setup = simulate.from_model(model, shapes, alt_a)
        resolved = resolve(text_b, setup)
        if resolved is None:
            print(f"  {case.name}: {text_b} does not apply, pair skipped", flush=True)
            continue
        alt_b = apply(alt_a, parse_what_if(resolved))
        record_a = bench.build(case, model, shapes, alt_a)
        record_b = bench.build(case, model, shapes, alt_b)
        pairs.append((text_a, resolved, alt_b, record_a, record_b))
    profiled = sorted({record_a["alternative"] for _, _, _, record_a, _ in pairs})
    teams = sorted({(record_a["alternative"], cost.effective_threads(alt_b.threads))
                    for _, _, alt_b, record_a, _ in pairs
                    if cost.effective_threads(alt_b.threads) != cost.effective_threads(1)})
    measured, profiles = bench.measure(case.name, profiled, teams)
    for text_a, text_b, alt_b, record_a, record_b in pairs:
        setup = simulate.from_artifact(record_a["artifact"], model)
        target = setup.target(setup.base)
        assert setup.graph is not None and setup.manifest is not None
        timings = cost.timings_from_profile(
            profiles[record_a["alternative"]], setup.graph, target.name, dict(target.kernels),
            simulate.measured_threads(setup.manifest), measured[record_a["alternative"]],
            "profile interleaved with the timing rounds")
        calibration = simulate.calibration_for(setup, timings)
        pred_a = simulate.simulate(setup, setup.base, timings, calibration)
        model_b = simulate.simulate(setup, replace(alt_b, label=text_b), timings, calibration)
        team = cost.effective_threads(alt_b.threads)
        at_team = f"{record_a['alternative']}@{team}"
        pred_b = model_b
        if at_team in profiles:  # as --measure does: A's artifact timed at B's team size
            extra = cost.timings_from_profile(
                profiles[at_team], setup.graph, target.name, dict(target.kernels), team,
                measured[at_team], f"A run at {team} threads (PYC_NUM_THREADS)")
            pred_b = simulate.simulate(setup, replace(alt_b, label=text_b), timings,
                                       calibration, {team: extra})
        row = {
            "model": case.name, "a": text_a, "b": text_b,
            "a_alternative": record_a["alternative"], "b_alternative": record_b["alternative"],
            "predicted_a_ms": pred_a.latency.ms, "predicted_b_ms": pred_b.latency.ms,
            "predicted_a_arena": pred_a.arena_bytes, "predicted_b_arena": pred_b.arena_bytes,
            "built_a_arena": record_a["arena_bytes"], "built_b_arena": record_b["arena_bytes"],
            "b_bases": pred_b.latency.bases(), "b_timings": pred_b.timings,
            "model_b_ms": model_b.latency.ms,
            "measured_a_ms": measured[record_a["alternative"]],
            "measured_b_ms": measured[record_b["alternative"]],
            "noise_a": record_a["noise"], "noise_b": record_b["noise"],
            "paired_ratio": paired_ratio(record_a["rounds_p50"], record_b["rounds_p50"])}
        rows.append(row)
        print(f"  {case.name}: {row['a']} vs {row['b']}: predicted {row['predicted_a_ms']:.4f} / "
              f"{row['predicted_b_ms']:.4f} ms, measured {row['measured_a_ms']:.4f} / "
              f"{row['measured_b_ms']:.4f} ms", flush=True)
    firsts = {record_a["alternative"]: record_a for _, _, _, record_a, _ in pairs}
    for record_a in firsts.values():  # this run's profiles calibrate the next models
        setup = simulate.from_artifact(record_a["artifact"], model)
        target = setup.target(setup.base)
        assert setup.graph is not None and setup.manifest is not None
        cost.remember(cost.machine_key(setup.manifest.get("cpu")),
                      cost.artifact_key(setup.manifest),
                      cost.timings_from_profile(profiles[record_a["alternative"]], setup.graph,
                                                target.name, dict(target.kernels),
                                                simulate.measured_threads(setup.manifest),
                                                measured[record_a["alternative"]], "bench"))
    print(f"{case.name}: {len(pairs)} pairs in {time.monotonic() - started:.0f} s", flush=True)


def paired_ratio(a_rounds: list[float], b_rounds: list[float]) -> float:
    """B / A measured as the median over rounds of B's p50 / A's p50 in the same round: both
    ran within a second of each other, so a load that drifts over the minutes of a model's
    rounds cancels (the separate p50s of all runs do not cancel it)."""
    return float(np.median([b / a for a, b in zip(a_rounds, b_rounds)]))


def winner(a: float, b: float, tie: float = 0.0) -> str:
    if abs(a - b) <= tie * min(a, b):
        return "tie"
    return "A" if a < b else "B"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # a pair agrees when both say the same of it: A faster, B faster, or no difference beyond
    # the tie band (a predicted 1.00x where the builds measure within 3% of each other agrees)
    agree = [winner(r["predicted_a_ms"], r["predicted_b_ms"], TIE)
             == winner(r["measured_a_ms"], r["measured_b_ms"], _band(r)) for r in rows]
    strict = [winner(r["predicted_a_ms"], r["predicted_b_ms"])
              == winner(r["measured_a_ms"], r["measured_b_ms"]) for r in rows]
    decisive = [r for r in rows if winner(r["measured_a_ms"], r["measured_b_ms"], TIE) != "tie"]
    agree_decisive = [winner(r["predicted_a_ms"], r["predicted_b_ms"])
                      == winner(r["measured_a_ms"], r["measured_b_ms"]) for r in decisive]
    # beyond the noise: the measured gap exceeds the two builds' round-to-round spread
    clear = [r for r in rows if abs(r["measured_a_ms"] - r["measured_b_ms"])
             > (r["noise_a"] + r["noise_b"]) * min(r["measured_a_ms"], r["measured_b_ms"])]
    agree_clear = [winner(r["predicted_a_ms"], r["predicted_b_ms"])
                   == winner(r["measured_a_ms"], r["measured_b_ms"]) for r in clear]
    errors_b = [r["predicted_b_ms"] / r["measured_b_ms"] - 1 for r in rows]
    errors_a = [r["predicted_a_ms"] / r["measured_a_ms"] - 1 for r in rows]
    for row, ok in zip(rows, agree):
        row["winner_agrees"] = ok
        row["b_error"] = row["predicted_b_ms"] / row["measured_b_ms"] - 1
    model_errors = [r["model_b_ms"] / r["measured_b_ms"] - 1 for r in rows]
    model_agree = [winner(r["predicted_a_ms"], r["model_b_ms"], TIE)
                   == winner(r["measured_a_ms"], r["measured_b_ms"], _band(r)) for r in rows]
    static = [i for i, r in enumerate(rows) if not r["b"].startswith("threads=")]
    # paired: the predicted ratio B/A against the ratio of the same rounds (drift cancels)
    paired = [r for r in rows if "paired_ratio" in r]
    paired_agree = [winner(r["predicted_a_ms"], r["predicted_b_ms"], TIE)
                    == winner(1.0, r["paired_ratio"], TIE) for r in paired]
    paired_errors = [r["predicted_b_ms"] / r["predicted_a_ms"] / r["paired_ratio"] - 1
                     for r in paired]
    arena_exact = [r["predicted_b_arena"] == r["built_b_arena"]
                   and r["predicted_a_arena"] == r["built_a_arena"] for r in rows]
    return {
        "pairs": len(rows),
        "winner_agreement": _share(agree), "winner_agreement_strict": _share(strict),
        "decisive_pairs": len(decisive), "winner_agreement_decisive": _share(agree_decisive),
        "beyond_noise_pairs": len(clear), "winner_agreement_beyond_noise": _share(agree_clear),
        "b_within_20pct": _share([abs(e) <= 0.2 for e in errors_b]),
        "all_within_20pct": _share([abs(e) <= 0.2 for e in errors_a + errors_b]),
        "b_median_abs_error": statistics.median(abs(e) for e in errors_b) if rows else None,
        # the model alone: a threads= alternative predicted from A's one-thread profile by the
        # Amdahl and load model, not timed at its team size
        "model_only_winner_agreement": _share(model_agree),
        "model_only_b_within_20pct": _share([abs(e) <= 0.2 for e in model_errors]),
        "without_threads_pairs": len(static),
        "without_threads_winner_agreement": _share([agree[i] for i in static]),
        "without_threads_b_within_20pct": _share([abs(errors_b[i]) <= 0.2 for i in static]),
        "arena_exact": _share(arena_exact),
        "paired_winner_agreement": _share(paired_agree),
        "paired_ratio_within_10pct": _share([abs(e) <= 0.1 for e in paired_errors]),
        "paired_ratio_median_abs_error": statistics.median(abs(e) for e in paired_errors)
        if paired else None,
    }


def _band(row: dict[str, Any]) -> float:
    """The measured tie band of a pair: TIE, or the builds' summed round-to-round spread where
    that is wider (a gap within it is no measured winner)."""
    return max(TIE, row["noise_a"] + row["noise_b"])


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def figures(summary: dict[str, Any], title: str) -> list[str]:
    """The agreement figures of one set of pairs as a markdown table."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.0%}"

    return [f"### {title}", "", "| figure | value | bar |", "| --- | --- | --- |",
            f"| pairs | {summary['pairs']} | >= 30 |",
            f"| winner agreement (a tie: a predicted gap under {TIE:.0%}, a measured one "
            "within the two builds' round-to-round spread, at least 3%) | "
            f"{pct(summary['winner_agreement'])} | >= 80% |",
            f"| winner agreement, strict (no ties) | {pct(summary['winner_agreement_strict'])} "
            "| |",
            f"| winner agreement, decisive pairs (measured gap > {TIE:.0%}: "
            f"{summary['decisive_pairs']}) | {pct(summary['winner_agreement_decisive'])} | |",
            f"| winner agreement, pairs whose gap exceeds the builds' round-to-round spread "
            f"({summary['beyond_noise_pairs']}) | {pct(summary['winner_agreement_beyond_noise'])}"
            " | |",
            f"| predicted builds (B) within 20% of measured | {pct(summary['b_within_20pct'])} "
            "| >= 80% |",
            f"| all predictions (A and B) within 20% | {pct(summary['all_within_20pct'])} | |",
            f"| model only (threads= from A's 1-thread profile, not timed at B's team): winner "
            f"agreement / B within 20% | {pct(summary['model_only_winner_agreement'])} / "
            f"{pct(summary['model_only_b_within_20pct'])} | |",
            f"| without the threads pairs ({summary['without_threads_pairs']}): winner agreement "
            f"/ B within 20% | {pct(summary['without_threads_winner_agreement'])} / "
            f"{pct(summary['without_threads_b_within_20pct'])} | |",
            f"| median abs error of B | {pct(summary['b_median_abs_error'])} | |",
            f"| arena predicted = built | {pct(summary['arena_exact'])} | 100% |",
            "| paired (B/A: the median over rounds of the ratio of the same round's p50s, "
            f"so drifting load cancels): winner agreement (tie: both gaps under {TIE:.0%}) / "
            "predicted B/A within 10% of it / median abs error | "
            f"{pct(summary.get('paired_winner_agreement'))} / "
            f"{pct(summary.get('paired_ratio_within_10pct'))} / "
            f"{pct(summary.get('paired_ratio_median_abs_error'))} | |", ""]


def markdown(summary: dict[str, Any], rows: list[dict[str, Any]], meta: dict[str, Any],
             real: dict[str, Any] | None = None) -> str:
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("model_seconds", {}).items())
    lines = [f"# What-if simulator vs builds ({meta['date']})", "",
             f"Command: `{meta['command']}`; {meta['machine']}; load average before "
             f"{meta['load_before']}, after {meta['load_after']}; {meta['seconds']:.0f} s"
             + (f" ({seconds})" if seconds else "")
             + (f"; each model tuned first (`--tune {meta['tune_s']:g}`)" if meta["tune_s"]
                else "; no tuning database") + "."
             + "".join(f" Skipped {k}: {v}." for k, v in meta.get("skipped", {}).items()), ""]
    lines += figures(summary, "All pairs")
    if real is not None:
        lines += figures(real, "The real benchmark models only (" + ", ".join(REAL) + ")")
    lines += ["| model | A | B | predicted A / B (ms) | measured A / B (ms) | B error | winner ok |"
              " B/A predicted / paired | B's latency from |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bases = ", ".join(f"{v:.0%} {k}" for k, v in r["b_bases"].items())
        if r.get("b_timings", "").startswith("A run at"):
            bases += f" ({r['b_timings']}; model alone {r['model_b_ms']:.4f} ms)"
        lines.append(f"| {r['model']} | {r['a']} | {r['b']} | {r['predicted_a_ms']:.4f} / "
                     f"{r['predicted_b_ms']:.4f} | {r['measured_a_ms']:.4f} / "
                     f"{r['measured_b_ms']:.4f} | {r['b_error']:+.0%} | "
                     f"{'yes' if r['winner_agrees'] else 'no'} | "
                     f"{r['predicted_b_ms'] / r['predicted_a_ms']:.3f} / "
                     f"{r.get('paired_ratio', float('nan')):.3f} | {bases} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--models", default="", help="comma-separated subset of the cases")
    parser.add_argument("--real", action="store_true", help=f"only the real models: "
                        f"{', '.join(REAL)}")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pyc-whatif")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out-name", default="whatif")
    parser.add_argument("--tune", type=float, default=0.0, metavar="SECONDS",
                        help="first `pyc build --tune` each model (this budget): the tuning "
                        "database's timings then calibrate kernel swaps")
    args = parser.parse_args()
    os.environ.pop("PYC_NUM_THREADS", None)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    os.environ[cost.STORE_ENV] = str(args.work / "calibration.json")
    os.environ["PYC_TUNING_DB"] = str(args.work / "tuning.json")  # fresh: only --tune fills it
    names = args.models.split(",") if args.models else (
        QUICK if args.quick else REAL if args.real else [c.name for c in CASES])
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    bench = Bench(args.work, args.rounds)
    rows: list[dict[str, Any]] = []
    model_seconds, skipped = {}, {}
    for case in CASES:
        if case.name in names:
            missing = _missing(case)
            if missing:  # a real model whose files are absent: said in the results
                print(f"{case.name} skipped: {missing}", flush=True)
                skipped[case.name] = missing
                continue
            case_started = time.monotonic()
            run_case(bench, case, rows, args.tune)
            model_seconds[case.name] = time.monotonic() - case_started
    real_rows = [r for r in rows if r["model"] in REAL]
    real = summarize(real_rows) if real_rows else None
    summary = summarize(rows)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python benchmarks/bench_whatif.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{cost.effective_threads(0)} cores usable",
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "seconds": time.monotonic() - started, "rounds": args.rounds, "tie": TIE,
            "tune_s": args.tune, "model_seconds": model_seconds, "skipped": skipped}
    out = ROOT / "benchmarks" / "results"
    (out / f"{args.out_name}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "summary_real_models": real, "pairs": rows},
        indent=1, sort_keys=True, default=str)
        + "\n")
    (out / f"{args.out_name}.md").write_text(markdown(summary, rows, meta, real))
    print(json.dumps({"all": summary, "real": real}, indent=1))


if __name__ == "__main__":
    main()
