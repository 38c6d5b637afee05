"""Issue #16 point 5, the online feedback planner: does one `pyc build --feedback` rebuild reduce
the tail-latency drift of a workload whose shape mix drifts?

MiniLM-L6 sizes (random weights, dynamic batch and seq, the export of `make bench-dynamic`) built
with `batch:1..8, seq:1..512` and shape buckets from an initial sample of the old mix (2000
requests, seed 0): seq ~ lognormal (median 24, sigma 1.0), batch 1..8 weighted to 1. Then:

1. phase 1 (the old mix, seed 1) and phase 2 (the drifted mix, seed 2: seq ~ lognormal median
   `--drift-median` (96), sigma 0.6; same batches) run once on the original artifact with
   PYC_TELEMETRY set: the telemetry of what a deployment saw;
2. the model is rebuilt with `--feedback` that telemetry (same flags, no sample);
3. timed, `--rounds` rounds: phase 1 on the original artifact, phase 2 on the original and on
   the rebuilt one, request by request in a rotating order (noise on a shared machine lands on
   both alike); a request's latency is its median over the rounds.

p95 is taken over time windows of `--window` consecutive requests. The drift is the p95 of
phase 2 minus the p95 of phase 1 (both on the original); after feedback, phase 2's p95 on the
rebuilt artifact minus the same phase-1 p95. The bar: the drift reduced by >= 15%.
Telemetry overhead: a small request, model.run with and without the recorder, interleaved.

    python benchmarks/feedback_drift.py --work /tmp/pyc-feedback   # make bench-feedback
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import pyc_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dynamic_buckets import BATCH_WEIGHTS, draw, write_sample  # noqa: E402  (the same request mix)

from tests.models.make_dynamic_bert import MINILM, sample_inputs  # noqa: E402

BOUNDS = ["input_ids=batch:1..8,seq:1..512", "attention_mask=batch,seq", "token_type_ids=batch,seq"]
OLD_MEDIAN, OLD_SIGMA = 24.0, 1.0
DRIFT_SIGMA = 0.6
SAMPLE_SIZE = 2000


def build(model: Path, out: Path, threads: int, **options: Any) -> tuple[Path, float]:
    from pyc_cli.ir.symbolic import parse_input_shapes

    shapes, _ = parse_input_shapes(BOUNDS)
    started = time.perf_counter()
    result = pyc_cli.build(model, out, input_shapes=shapes, threads=threads, cache=False,
                           force=True, **options)
    return result.artifact, time.perf_counter() - started


def timed(run: Any, feeds: dict[str, np.ndarray]) -> float:
    started = time.perf_counter()
    run(feeds)
    return (time.perf_counter() - started) * 1e3


def windows(latency: list[float], size: int) -> list[float]:
    return [float(np.percentile(latency[i:i + size], 95))
            for i in range(0, len(latency) - size + 1, size)]


def buckets_of(artifact: Path) -> list[dict[str, Any]]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    return [{k: b[k] for k in ("id", "kind", "dims", "count", "share", "arena_bytes")}
            for b in manifest.get("buckets", [])]


def collect(artifact: Path, telemetry: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Every request once on the original artifact with PYC_TELEMETRY set."""
    os.environ["PYC_TELEMETRY"] = str(telemetry)
    try:
        model = pyc_cli.load(artifact)
    finally:
        del os.environ["PYC_TELEMETRY"]
    for one in feeds:
        model.run(one)
    model.close()  # writes the file


def overhead(artifact: Path, feeds: dict[str, np.ndarray], work: Path, runs: int) -> dict[str, float]:
    """model.run at one small request with and without the telemetry recorder, interleaved."""
    plain = pyc_cli.load(artifact)
    os.environ["PYC_TELEMETRY"] = str(work / "overhead.json")
    try:
        recorded = pyc_cli.load(artifact)
    finally:
        del os.environ["PYC_TELEMETRY"]
    times: dict[str, list[float]] = {"plain": [], "telemetry": []}
    for _ in range(5):
        plain.run(feeds), recorded.run(feeds)
    for index in range(runs):
        for name, model in (("plain", plain), ("telemetry", recorded))[::1 if index % 2 else -1]:
            times[name].append(timed(model.run, feeds))
    plain.close(), recorded.close()
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"plain_median_ms": med["plain"], "telemetry_median_ms": med["telemetry"],
            "added_us": (med["telemetry"] - med["plain"]) * 1e3, "runs": runs}


def record_cost(artifact: Path, feeds: dict[str, np.ndarray], work: Path, calls: int) -> float:
    """Microseconds per Recorder.record call (what telemetry adds to a run besides the second
    dispatch), timed directly: end-to-end differences drown in a loaded machine's noise."""
    from pyc_cli.artifact.reader import read_manifest
    from pyc_cli.telemetry import Recorder

    recorder = Recorder(work / "record_cost.json", read_manifest(artifact), artifact,
                        kernel_every=0, flush_every=10 ** 9)
    started = time.perf_counter()
    for _ in range(calls):
        recorder.record(feeds, "b1", [1.0])
    return (time.perf_counter() - started) / calls * 1e6


def paired(before: list[float], after: list[float]) -> dict[str, float]:
    """Per request, before / after (the same request, rounds interleaved): its spread."""
    ratios = np.array(before) / np.array(after)
    return {"median": float(np.median(ratios)), "p5": float(np.percentile(ratios, 5)),
            "p95": float(np.percentile(ratios, 95)),
            "geomean": float(np.exp(np.mean(np.log(ratios))))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pyc-feedback"))
    parser.add_argument("--model", type=Path, help="the MiniLM export (default: made in --work)")
    parser.add_argument("--requests", type=int, default=160, help="requests per phase")
    parser.add_argument("--window", type=int, default=40, help="requests per p95 window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--drift-median", type=float, default=96.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="feedback-drift")
    parser.add_argument("--reuse", action="store_true",
                        help="keep an original artifact already in --work (same flags)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    model = args.work / "minilm.onnx"
    if args.model is not None and not model.exists():
        shutil.copyfile(args.model, model)
    if not model.exists():
        subprocess.run([sys.executable, str(ROOT / "tests" / "models" / "make_dynamic_bert.py"),
                        str(model), "--minilm"], check=True)
    os.environ["PYC_NUM_THREADS"] = str(args.threads)
    sample = args.work / "sample.json"
    write_sample(sample, draw(0, SAMPLE_SIZE, OLD_MEDIAN, OLD_SIGMA))
    original, build_s = args.work / "original", 0.0
    if not (args.reuse and (original / "manifest.json").exists()):
        original, build_s = build(model, original, args.threads, shape_sample=sample)
    print(f"original built in {build_s:.0f} s: {buckets_of(original)}", flush=True)
    phases = {"phase1": draw(1, args.requests, OLD_MEDIAN, OLD_SIGMA),
              "phase2": draw(2, args.requests, args.drift_median, DRIFT_SIGMA)}
    rng = np.random.default_rng(3)
    feeds = {name: [sample_inputs(rng, MINILM["vocab_size"], b, s) for b, s in requests]
             for name, requests in phases.items()}
    telemetry = args.work / "telemetry.json"
    telemetry.unlink(missing_ok=True)
    collect(original, telemetry, feeds["phase1"] + feeds["phase2"])
    rebuilt, rebuild_s = build(model, args.work / "feedback", args.threads, feedback=telemetry)
    print(f"rebuilt in {rebuild_s:.0f} s: {buckets_of(rebuilt)}", flush=True)

    models = {"original": pyc_cli.load(original), "feedback": pyc_cli.load(rebuilt)}
    for one in feeds["phase1"] + feeds["phase2"]:  # warm-up: every plan loaded
        for m in models.values():
            m.run(one)
    errors = max(float(np.max(np.abs(models["feedback"].run(one)["last_hidden_state"]
                                      - models["original"].run(one)["last_hidden_state"])))
                 for one in feeds["phase2"][:8])
    runs = {"phase1/original": ("phase1", "original"), "phase2/original": ("phase2", "original"),
            "phase2/feedback": ("phase2", "feedback")}
    times: dict[str, list[list[float]]] = {k: [[] for _ in range(args.requests)] for k in runs}
    plans: dict[str, Counter[str]] = {k: Counter() for k in runs}
    new_plans: dict[str, list[int]] = {}  # phase-2 requests by the rebuilt plan serving them
    for round_index in range(args.rounds):
        for index in range(args.requests):
            keys = list(runs)
            for k in range(len(keys)):  # a rotating order, request by request
                key = keys[(index + round_index + k) % len(keys)]
                phase, artifact = runs[key]
                model_ = models[artifact]
                times[key][index].append(timed(model_.run, feeds[phase][index]))
                if round_index == 0:
                    plans[key][model_.stats.last_plan or "generic"] += 1
                    if key == "phase2/feedback":
                        new_plans.setdefault(model_.stats.last_plan or "generic", []).append(index)
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    latency = {k: [statistics.median(t) for t in per] for k, per in times.items()}
    p95 = {k: float(np.percentile(v, 95)) for k, v in latency.items()}
    per_window = {k: windows(v, args.window) for k, v in latency.items()}
    drift_before = p95["phase2/original"] - p95["phase1/original"]
    drift_after = p95["phase2/feedback"] - p95["phase1/original"]
    window_drift = [(b - a, c - a) for a, b, c in zip(per_window["phase1/original"],
                                                       per_window["phase2/original"],
                                                       per_window["phase2/feedback"])]
    for m in models.values():
        m.close()
    small = sample_inputs(np.random.default_rng(4), MINILM["vocab_size"], 1, 16)
    tel = json.loads(telemetry.read_text())
    result = {
        "benchmark": "feedback_drift",
        "command": " ".join(["python", "benchmarks/feedback_drift.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
        "threads": args.threads, "rounds": args.rounds, "requests_per_phase": args.requests,
        "window": args.window,
        "mixes": {"initial_sample": f"{SAMPLE_SIZE} requests seed 0, seq lognormal median "
                                    f"{OLD_MEDIAN} sigma {OLD_SIGMA}",
                  "phase1": f"seed 1, seq lognormal median {OLD_MEDIAN} sigma {OLD_SIGMA}",
                  "phase2": f"seed 2, seq lognormal median {args.drift_median} sigma {DRIFT_SIGMA}",
                  "batch_weights": BATCH_WEIGHTS, "seq_clip": [1, 512]},
        "build_s": {"original": build_s, "feedback": rebuild_s},
        "buckets": {"original": buckets_of(original), "feedback": buckets_of(rebuilt)},
        "telemetry": {"runs": tel["runs"], "distinct_shapes": len(tel["shapes"]),
                      "bytes": telemetry.stat().st_size},
        "plans_served": {k: dict(v) for k, v in plans.items()},
        "p95_ms": p95,
        "p50_ms": {k: float(np.percentile(v, 50)) for k, v in latency.items()},
        "p95_per_window_ms": per_window,
        "drift_ms": {"before": drift_before, "after": drift_after,
                     "reduction": 1.0 - drift_after / drift_before if drift_before else None,
                     "per_window_before_after": window_drift},
        "bar": "tail-latency drift reduced by >= 15% after one feedback rebuild",
        "bar_met": bool(drift_before > 0 and 1.0 - drift_after / drift_before >= 0.15),
        "max_abs_diff_feedback_vs_original": errors,
        "telemetry_overhead": {**overhead(original, small, args.work, 400),
                               "record_us": record_cost(original, small, args.work, 2000)},
        "phase2_original_over_feedback_per_request": paired(latency["phase2/original"],
                                                            latency["phase2/feedback"]),
        "phase2_original_over_feedback_by_new_plan": {
            plan: paired([latency["phase2/original"][i] for i in idx],
                         [latency["phase2/feedback"][i] for i in idx])
            for plan, idx in sorted(new_plans.items())},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("p95_ms", "p95_per_window_ms", "drift_ms", "bar_met",
                                             "plans_served", "telemetry_overhead",
                                             "phase2_original_over_feedback_per_request",
                                             "phase2_original_over_feedback_by_new_plan")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
