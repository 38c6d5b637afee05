"""A/B of the blocked channel layout: ResNet-50 (random weights) built with `--layout auto` and
`--layout nchw` (and optionally `blocked`), timed kernel by kernel with `pyc run --profile` in
alternating rounds, at PYC_NUM_THREADS threads (default 1). Prints per round the kernels' summed
median time, then per node the median over rounds and the ratio, and the medians over rounds.

    python benchmarks/layout_ab.py [--rounds 5] [--repeat 10] [--layouts auto,nchw]
                                   [--model PATH] [--work DIR] [--threads 1]

On a shared machine the per-kernel medians (each over `--repeat` runs in one process, then over
rounds) are steadier than whole-run latency; alternate the builds (as here) and quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(model: Path, out: Path, layout: str) -> None:
    subprocess.run([sys.executable, "-m", "pyc_cli", "build", str(model), "-o", str(out),
                    "--layout", layout, "--no-cache", "--force", "-q"], check=True)


def profiled_run(artifact: Path, repeat: int, threads: int, inputs: Path | None = None) -> dict:
    """`pyc run --profile --json` of `artifact` on `threads` threads, fed `inputs` (an .npz) or
    random inputs: the whole JSON (latency, and the profile's calls). roofline.py uses it too."""
    env = dict(os.environ, PYC_NUM_THREADS=str(threads))
    feeds = ["--inputs", str(inputs)] if inputs is not None else ["--random-inputs", "1"]
    out = subprocess.run([sys.executable, "-m", "pyc_cli", "run", str(artifact), *feeds,
                          "--profile", "--repeat", str(repeat), "--json"],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def profile(artifact: Path, repeat: int, threads: int) -> dict:
    return profiled_run(artifact, repeat, threads)["profile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layouts", default="auto,nchw")
    parser.add_argument("--model", type=Path, help="an ONNX ResNet-50 (default: made from onnx's "
                        "light zoo with random weights, as real_models.py does)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pyc_layout_ab")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import numpy as np
        from real_models import MODELS

        model, _ = MODELS["resnet50"](args.work, np.random.default_rng(0))
    layouts = args.layouts.split(",")
    artifacts = {layout: args.work / f"resnet50_{layout}.pyc" for layout in layouts}
    for layout, artifact in artifacts.items():
        build(model, artifact, layout)
    totals: dict[str, list[float]] = defaultdict(list)
    nodes: dict[str, dict[str, list[float]]] = {layout: defaultdict(list) for layout in layouts}
    kernels: dict[str, dict[str, str]] = {layout: {} for layout in layouts}
    for round_ in range(args.rounds):
        for layout, artifact in artifacts.items():
            result = profile(artifact, args.repeat, args.threads)
            totals[layout].append(result["total_ms"])
            for call in result["calls"]:
                nodes[layout][call["node"]].append(call["median_ms"])
                kernels[layout][call["node"]] = call["kernel"]
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in totals.items()),
              flush=True)
    first, second = layouts[0], layouts[-1]
    print(f"\n{'node':16s} {first + ' kernel':24s} {'ms':>7s} | {second + ' kernel':24s} {'ms':>7s}"
          f" | {second}/{first}")
    for node, times in nodes[first].items():
        a = statistics.median(times)
        b = statistics.median(nodes[second][node]) if node in nodes[second] else 0.0
        print(f"{node:16s} {kernels[first][node]:24s} {a:7.3f} | "
              f"{kernels[second].get(node, '-'):24s} {b:7.3f} | {b / a if a else 0:5.2f}")
    print()
    for layout in layouts:
        sums = [sum(statistics.median(t) for t in nodes[layout].values())]
        print(f"{layout}: kernels' summed time per round {[round(t, 2) for t in totals[layout]]}, "
              f"median {statistics.median(totals[layout]):.2f} ms; sum of per-node medians "
              f"{sums[0]:.2f} ms")


if __name__ == "__main__":
    main()
