"""Issue #15 point 5: MiniLM-L6 (random weights, dynamic batch and seq) on a long-tailed stream of
requests: p50 / p95 latency and arena of (a) one generic symbolic PyC plan, (b) PyC shape
buckets (boxes of the dims chosen from a sample, docs/dynamic_shapes.md), (c) onnxruntime.

The request stream: seq ~ lognormal (median 24 tokens, sigma 1.0, clipped to 1..512: about
84% under 64, a tail to 512), batch 1..8 weighted towards 1. The buckets are chosen from a sample
of SAMPLE_SIZE requests drawn with seed 0; the requests timed are another draw (seed 1) of the
same distribution, so the buckets are not fitted to the requests they are timed on.

Every engine runs every request in each round, the engines in a rotating order request by
request (noise on a shared machine lands on each alike), the same thread count for all. A
request's latency is its median over the rounds; p50 / p95 are over the requests. PyC's times
are `model.run` (dispatch included: the generic plan is the same artifact with dispatch off).
Arena: PyC's from the manifests (the generic plan's; the buckets': the largest plan any request
ran, and the request-weighted mean); onnxruntime's peak working memory (RSS growth while running,
benchmarks/memprobe.py in a fresh process) at the largest request, with PyC's generic plan
measured the same way beside it.

    python benchmarks/dynamic_buckets.py --work /tmp/dynbuckets       # make bench-dynamic
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import pyc_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.models.make_dynamic_bert import MINILM, sample_inputs  # noqa: E402

BOUNDS = ["input_ids=batch:1..8,seq:1..512", "attention_mask=batch,seq", "token_type_ids=batch,seq"]
BATCH_WEIGHTS = (0.40, 0.20, 0.12, 0.08, 0.06, 0.05, 0.05, 0.04)  # batch 1..8
SEQ_MEDIAN, SEQ_SIGMA = 24.0, 1.0
SAMPLE_SIZE = 2000
NAMES = ("generic", "buckets", "ort")


def draw(seed: int, count: int, median: float = SEQ_MEDIAN,
         sigma: float = SEQ_SIGMA) -> list[tuple[int, int]]:
    """`count` (batch, seq) requests of the long-tailed distribution (module docstring; the
    feedback benchmark moves its median)."""
    rng = np.random.default_rng(seed)
    seq = np.clip(np.round(np.exp(rng.normal(np.log(median), sigma, count))), 1, 512)
    batch = rng.choice(np.arange(1, 9), count, p=np.array(BATCH_WEIGHTS))
    return [(int(b), int(s)) for b, s in zip(batch, seq)]


def write_sample(path: Path, requests: list[tuple[int, int]]) -> None:
    counts = Counter(requests)
    path.write_text(json.dumps([{"shapes": {name: [b, s] for name in
                                            ("input_ids", "attention_mask", "token_type_ids")},
                                 "count": n} for (b, s), n in sorted(counts.items())]))


def build(model: Path, work: Path, sample: Path, threads: int, buckets: str) -> dict[str, Any]:
    """The artifact with buckets (its generic plan is (a)); the build's wall time."""
    from pyc_cli.ir.symbolic import parse_input_shapes

    shapes, _ = parse_input_shapes(BOUNDS)
    started = time.perf_counter()
    result = pyc_cli.build(model, work / "minilm_buckets", input_shapes=shapes, threads=threads,
                           shape_buckets=buckets, shape_sample=sample, cache=False, force=True)
    return {"artifact": result.artifact, "build_s": time.perf_counter() - started}


def ort_session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def timed(run: Any, feeds: dict[str, np.ndarray]) -> float:
    started = time.perf_counter()
    run(feeds)
    return (time.perf_counter() - started) * 1e3


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "mean_ms": float(np.mean(values))}


def memprobe(engine: str, target: Path, feeds: dict[str, np.ndarray], work: Path,
             threads: int) -> dict[str, Any] | None:
    """Peak working memory of one engine at one request, in a fresh process (memprobe.py)."""
    path = work / "largest.npz"
    np.savez(path, **feeds)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memprobe.py"), "--engine",
                           engine, "--target", str(target), "--inputs", str(path), "--threads",
                           str(threads), "--runs", "3"], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode != 0:
        print(f"memprobe {engine} failed: {done.stderr[-400:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(models: dict[str, Any], session: ort.InferenceSession, plans: dict[str, list[int]],
          feeds_of: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Each plan's worst relative error against onnxruntime over up to 3 of its requests."""
    errors = {}
    for plan, indices in sorted(plans.items()):
        worst = 0.0
        for index in indices[:3]:
            want = session.run(None, feeds_of[index])[0]
            got = models["buckets"](feeds_of[index])["last_hidden_state"]
            worst = max(worst, float(np.max(np.abs(got - want)) / np.max(np.abs(want))))
        errors[plan] = worst
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pyc-dynamic-buckets"),
                        help="where the model, the sample and the artifact go")
    parser.add_argument("--requests", type=int, default=200, help="requests timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="every engine's thread count")
    parser.add_argument("--buckets", default="auto", help="--shape-buckets (auto or a count)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="dynamic-buckets")
    parser.add_argument("--no-memprobe", action="store_true")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    model = args.work / "minilm.onnx"
    if not model.exists():
        subprocess.run([sys.executable, str(ROOT / "tests" / "models" / "make_dynamic_bert.py"),
                        str(model), "--minilm"], check=True)
    sample = args.work / "sample.json"
    write_sample(sample, draw(0, SAMPLE_SIZE))
    built = build(model, args.work, sample, args.threads, args.buckets)
    manifest = json.loads((built["artifact"] / "manifest.json").read_text())
    requests = draw(1, args.requests)
    rng = np.random.default_rng(2)
    feeds_of = [sample_inputs(rng, MINILM["vocab_size"], b, s) for b, s in requests]

    os.environ["PYC_NUM_THREADS"] = str(args.threads)  # read when a plan is loaded
    session = ort_session(model, args.threads)
    bucketed = pyc_cli.load(built["artifact"])
    generic = pyc_cli.load(built["artifact"])
    generic.buckets = None  # the same artifact, dispatch off: every run on the generic plan
    runs = {"generic": generic.run, "buckets": bucketed.run,
            "ort": lambda feeds: session.run(None, feeds)}
    plans: dict[str, list[int]] = {}
    dispatch_us = []
    for index, feeds in enumerate(feeds_of):  # warm-up: every plan loaded, every shape once
        for name in NAMES:
            runs[name](feeds)
        plans.setdefault(bucketed.stats.last_plan or "generic", []).append(index)
        dispatch_us.append(bucketed.buckets.pick(feeds)[1])
    hot = [bucketed.buckets.pick(feeds)[1] for feeds in feeds_of for _ in range(50)]
    errors = check({"buckets": bucketed.run}, session, plans, feeds_of)
    times: dict[str, list[list[float]]] = {name: [[] for _ in requests] for name in NAMES}
    order = np.random.default_rng(3)
    for round_index in range(args.rounds):
        for index in order.permutation(len(requests)):
            for k in range(len(NAMES)):  # a rotating order, request by request
                name = NAMES[(index + round_index + k) % len(NAMES)]
                times[name][index].append(timed(runs[name], feeds_of[index]))
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    latency = {name: [statistics.median(t) for t in per] for name, per in times.items()}
    per_round = {name: [percentiles([t[r] for t in per]) for r in range(args.rounds)]
                 for name, per in times.items()}
    arenas = {b["id"]: b["arena_bytes"] for b in manifest["buckets"]}
    arenas["generic"] = manifest["arena_bytes"]
    used = [arenas[plan] for plan, indices in plans.items() for _ in indices]
    per_plan = {plan: {"requests": len(indices), "arena_bytes": arenas[plan],
                       "generic_p50_ms": float(np.median([latency["generic"][i] for i in indices])),
                       "plan_p50_ms": float(np.median([latency["buckets"][i] for i in indices])),
                       "ort_p50_ms": float(np.median([latency["ort"][i] for i in indices])),
                       "max_rel_err_vs_ort": errors[plan]}
                for plan, indices in sorted(plans.items())}
    largest = max(range(len(requests)), key=lambda i: requests[i][0] * requests[i][1])
    memory = {} if args.no_memprobe else {
        "at": list(requests[largest]),
        "ort": memprobe("ort", model, feeds_of[largest], args.work, args.threads),
        "pyc_generic": memprobe("pyc", built["artifact"], feeds_of[largest], args.work,
                                args.threads)}
    summary = {name: percentiles(latency[name]) for name in NAMES}
    result = {
        "benchmark": "dynamic_buckets", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
        "threads": args.threads, "rounds": args.rounds, "requests": len(requests),
        "distribution": {"seq": f"lognormal median {SEQ_MEDIAN}, sigma {SEQ_SIGMA}, 1..512",
                         "batch_weights": BATCH_WEIGHTS, "sample": SAMPLE_SIZE,
                         "sample_seed": 0, "request_seed": 1,
                         "seq_under_64": float(np.mean([s < 64 for _, s in requests])),
                         "seq_p50_p95_max": [float(np.percentile([s for _, s in requests], q))
                                             for q in (50, 95, 100)]},
        "build_s": built["build_s"],
        "buckets": [{k: b[k] for k in ("id", "kind", "dims", "count", "share", "arena_bytes",
                                       "shared_weights")} for b in manifest["buckets"]],
        "latency": summary,
        "latency_per_round": per_round,
        "ratios": {"p50_generic_over_buckets": summary["generic"]["p50_ms"] / summary["buckets"]["p50_ms"],
                   "p95_generic_over_buckets": summary["generic"]["p95_ms"] / summary["buckets"]["p95_ms"],
                   "p95_ort_over_buckets": summary["ort"]["p95_ms"] / summary["buckets"]["p95_ms"],
                   "p50_ort_over_buckets": summary["ort"]["p50_ms"] / summary["buckets"]["p50_ms"],
                   "p95_per_round_generic_over_buckets": [
                       g["p95_ms"] / b["p95_ms"] for g, b in zip(per_round["generic"],
                                                                per_round["buckets"])]},
        "per_plan": per_plan,
        # Python's dispatch: once per request right after its runs (caches cold, as served),
        # and 50 times in a row per request (hot)
        "dispatch_us": {"median": float(np.median(dispatch_us)),
                        "p95": float(np.percentile(dispatch_us, 95)),
                        "hot_median": float(np.median(hot)),
                        "hot_p95": float(np.percentile(hot, 95))},
        "arena_bytes": {"generic": manifest["arena_bytes"], "buckets_peak": max(used),
                        "buckets_request_mean": float(np.mean(used))},
        "memory_at_largest_request": memory,
        "weights_bytes": {"generic": manifest["weights"]["bytes"],
                          "artifact_total": sum(p.stat().st_size for p in
                                                built["artifact"].rglob("*.bin"))},
    }
    for closing in (bucketed, generic):
        closing.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    chart(result, latency, args.out / f"{args.name}.png")
    print(json.dumps({k: result[k] for k in ("latency", "ratios", "arena_bytes", "dispatch_us",
                                             "per_plan", "buckets")}, indent=1))
    return 0


def chart(result: dict[str, Any], latency: dict[str, list[float]], path: Path) -> None:
    """Latency CDF of the three engines over the requests, p50 / p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    labels = {"generic": "PyC generic plan", "buckets": "PyC shape buckets", "ort": "onnxruntime"}
    for name in NAMES:
        values = np.sort(latency[name])
        stats = result["latency"][name]
        axis.plot(values, np.arange(1, len(values) + 1) / len(values),
                  label=f"{labels[name]}: p50 {stats['p50_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms")
    axis.set_xscale("log")
    axis.set_xlabel("latency per request, ms (median over rounds)")
    axis.set_ylabel("share of requests")
    axis.axhline(0.95, color="grey", lw=0.5)
    axis.set_title(f"MiniLM-L6, {result['requests']} requests (batch 1..8, seq 1..512 long-tailed),"
                   f" {result['threads']} thread(s)", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
