"""Kernels split for the machine's team: on a many-core host, one build whose parallel tasks
are planned for the reference 2-core team (`--threads 2`, as every build was before
targets/cpu/team.py) and one planned for THREADS (`--threads THREADS`), both run with
THREADS threads (PYC_NUM_THREADS), side by side with onnxruntime at THREADS intra-op threads,
interleaved rounds in one process; outputs checked against onnxruntime:

    python benchmarks/team_scaling.py --threads 16 --models resnet50,mlp_b64,minilm \\
        [--rounds 5 --repeat 20] [--out team_scaling.json]

Prints p50 per engine and the ratios; quote those, not absolute times."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memprobe import timed  # noqa: E402
from real_models import MODELS, _feeds  # noqa: E402

import pyc_cli  # noqa: E402


def measure(name: str, work: Path, threads: int, rounds: int, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    path, shapes = MODELS[name](work, rng)
    feeds = _feeds(path, shapes, rng)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    os.environ["PYC_NUM_THREADS"] = str(threads)
    models, record = {}, {"model": name, "threads": threads}
    for label, planned in (("pyc_planned_2", 2), (f"pyc_planned_{threads}", threads)):
        built = pyc_cli.build(path, work / f"{name}-{planned}.pyc", input_shapes=shapes,
                              threads=planned, force=True)
        models[label] = pyc_cli.load(built.artifact)
        got = list(models[label].run(feeds).values())
        record[f"{label}_matches_ort"] = all(
            np.allclose(g, e, rtol=1e-3, atol=1e-3 * max(1.0, float(np.max(np.abs(e)))))
            for g, e in zip(got, expected))
    timers = {label: (lambda m: lambda n: m.time_runs(feeds, n))(model)
              for label, model in models.items()}
    timers["onnxruntime"] = lambda n: timed(lambda: session.run(None, feeds), n)
    samples: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(rounds):
        for label, timer in timers.items():
            timer(3)  # warm after the other engine
            samples[label].append(statistics.median(timer(repeat)))
    for model in models.values():
        model.close()
    record["p50_ms"] = {k: statistics.median(v) for k, v in samples.items()}
    record["rounds_ms"] = samples
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--models", default="resnet50,mlp_b64,minilm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pyc-team-") as scratch:
        for name in args.models.split(","):
            row = measure(name, Path(scratch), args.threads, args.rounds, args.repeat)
            rows.append(row)
            p50 = row["p50_ms"]
            planned = p50[f"pyc_planned_{args.threads}"]
            cells = "  ".join(f"{k} {v:.3f} ms" for k, v in p50.items())
            print(f"{name} threads={args.threads}: {cells}  ort/planned {p50['onnxruntime'] / planned:.2f}"
                  f"  planned_2/planned {p50['pyc_planned_2'] / planned:.2f}", flush=True)
            if args.out:
                args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows},
                                               indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
