"""Built PyC artifacts beside onnxruntime and OpenVINO (f32) on one model, in one process:
rounds of `--repeat` runs per engine, the order reversed every other round, a 0.3 s pause before
each block (bench.SETTLE_S), so that a drifting load hits every engine alike. Checks every
artifact's outputs against onnxruntime first, then prints each engine's p50, its per-round
medians, and the paired ratios (median over rounds of the same round's ratio): OTHER/ARTIFACT for
onnxruntime and OpenVINO, and ARTIFACT/FIRST between artifacts (< 1: faster than the first).

    python benchmarks/artifact_ab.py MODEL.onnx base=/tmp/base.pyc new=/tmp/new.pyc \\
        [--threads 1] [--rounds 12] [--repeat 8] [--cpu] [--shape INPUT=1,3,48,320]

Build the artifacts from two source trees (`PYTHONPATH=TREE python -m pyc_cli build MODEL -o
ART --threads T`; a tree can be `git archive COMMIT pyc_cli codegen_templates runtime_c | tar -x
-C DIR`). `--cpu` times process CPU time instead of wall time: on a loaded shared machine a
one-thread run's CPU time is hit less by preemption (at 1 thread only: a larger team's idle
spinning would count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_models import model_feeds, openvino_request  # noqa: E402

SETTLE_S = 0.3  # bench.SETTLE_S (not imported: bench.py imports matplotlib)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("artifacts", nargs="+", help="NAME=ARTIFACT_DIR")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--shape", action="append", default=[], metavar="INPUT=D,D,...",
                        help="an input's shape where the model leaves dims open (as built)")
    args = parser.parse_args()
    given = {name: tuple(int(d) for d in dims.split(","))
             for name, _, dims in (spec.partition("=") for spec in args.shape)}
    os.environ["PYC_NUM_THREADS"] = str(args.threads)  # read when a library creates its model
    import onnxruntime as ort

    import pyc_cli

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    shapes = {value.name: given.get(value.name) or tuple(d if isinstance(d, int) else 1 for d in value.shape)
              for value in session.get_inputs()}
    feeds = model_feeds(args.model, shapes, np.random.default_rng(0))
    expected = session.run(None, feeds)
    clock = time.process_time if args.cpu else time.perf_counter

    def timed(run: Callable[[], object], count: int) -> list[float]:
        run()
        samples = []
        for _ in range(count):
            start = clock()
            run()
            samples.append((clock() - start) * 1e3)
        return samples

    engines: dict[str, Callable[[int], list[float]]] = {}
    for spec in args.artifacts:
        name, _, path = spec.partition("=")
        model = pyc_cli.load(path)
        got = list(model.run(feeds).values())
        error = max(float(np.max(np.abs(g.astype(np.float64) - e))) for g, e in zip(got, expected))
        print(f"{name}: max |PyC - onnxruntime| {error:.3g}")
        engines[name] = (lambda m: lambda n: timed(lambda: m.run(feeds), n))(model)
    artifacts = list(engines)
    engines["ort"] = lambda n: timed(lambda: session.run(None, feeds), n)
    request = None if args.no_openvino else openvino_request(args.model, args.threads, "model")
    if request is not None:
        engines["openvino"] = lambda n: timed(lambda: request.infer(feeds), n)
    names = list(engines)
    rounds: dict[str, list[float]] = {n: [] for n in names}
    pooled: dict[str, list[float]] = {n: [] for n in names}
    print(f"load before {os.getloadavg()}")
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(SETTLE_S)
            samples = engines[name](args.repeat)
            rounds[name].append(statistics.median(samples))
            pooled[name] += samples
    print(f"load after {os.getloadavg()}; {'process CPU' if args.cpu else 'wall'} ms, "
          f"{args.threads} thread(s), {args.rounds} rounds x {args.repeat} runs")

    def paired(a: str, b: str) -> float:
        return float(statistics.median(x / y for x, y in zip(rounds[a], rounds[b])))

    for name in names:
        print(f"{name:10s} p50 {statistics.median(pooled[name]):8.2f}  rounds "
              + " ".join(f"{x:.1f}" for x in rounds[name]))
    for name in artifacts:
        line = [f"{other}/{name} {paired(other, name):.3f}" for other in ("ort", "openvino")
                if other in engines]
        if name != artifacts[0]:
            wins = sum(x < y for x, y in zip(rounds[name], rounds[artifacts[0]]))
            line.append(f"{name}/{artifacts[0]} {paired(name, artifacts[0]):.3f} "
                        f"(faster in {wins} of {args.rounds} rounds)")
        print("paired: " + ", ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
