"""A/B of two PyC source trees on a whole model, kernel by kernel: each tree builds the model
(PYTHONPATH=TREE, `--threads 2`), then `pyc run --profile` of each artifact (run by its own tree,
which regenerates its sources) alternates for `--rounds` rounds at `--threads` threads. Prints per
node the median over rounds of each tree's per-kernel median and the ratio B/A, then each tree's
summed time. On a shared machine the per-node medians are steadier than whole-run latency; the
nodes a change does not touch show the noise level.

    python benchmarks/profile_ab.py TREE_A TREE_B MODEL.onnx [--input-shape x=1,3,48,320]
                                    [--rounds 6] [--repeat 10] [--threads 1] [--only KERNEL]

TREE_A can be a plain export of a commit (`git archive BASE | tar -x -C /tmp/base`).
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


def build(tree: str, model: Path, out: Path, shapes: list[str]) -> None:
    flags = [f for shape in shapes for f in ("--input-shape", shape)]
    subprocess.run([sys.executable, "-m", "pyc_cli", "build", str(model), "-o", str(out), *flags,
                    "--threads", "2", "--no-cache", "--force", "-q"], check=True,
                   env=dict(os.environ, PYTHONPATH=tree), cwd=tree)  # -m: cwd first


def profile(tree: str, artifact: Path, repeat: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, PYC_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "pyc_cli", "run", str(artifact), "--random-inputs",
                          "1", "--profile", "--repeat", str(repeat), "--json"], check=True,
                         capture_output=True, text=True, env=env, cwd=tree).stdout
    return json.loads(out)["profile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tree_a")
    parser.add_argument("tree_b")
    parser.add_argument("model", type=Path)
    parser.add_argument("--input-shape", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="print only the nodes of this kernel")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pyc_profile_ab")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"A": str(Path(args.tree_a).resolve()), "B": str(Path(args.tree_b).resolve())}
    artifacts = {name: args.work / f"model_{name}.pyc" for name in trees}
    for name, tree in trees.items():
        build(tree, args.model.resolve(), artifacts[name].resolve(), args.input_shape)
    nodes: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in trees}
    kernels: dict[str, dict[str, str]] = {name: {} for name in trees}
    for round_ in range(args.rounds):
        for name in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
            result = profile(trees[name], artifacts[name].resolve(), args.repeat, args.threads)
            for call in result["calls"]:
                nodes[name][call["node"]].append(call["median_ms"])
                kernels[name][call["node"]] = call["kernel"]
        print(f"round {round_ + 1} done", flush=True)
    print(f"\n{'node':24s} {'A kernel':22s} {'A ms':>7s} | {'B kernel':22s} {'B ms':>7s} | B/A")
    for node in dict.fromkeys([*nodes["A"], *nodes["B"]]):
        if args.only and args.only not in (kernels["A"].get(node), kernels["B"].get(node)):
            continue
        a = statistics.median(nodes["A"][node]) if node in nodes["A"] else 0.0
        b = statistics.median(nodes["B"][node]) if node in nodes["B"] else 0.0
        print(f"{node:24s} {kernels['A'].get(node, '-'):22s} {a:7.3f} | "
              f"{kernels['B'].get(node, '-'):22s} {b:7.3f} | {b / a if a else 0:5.2f}")
    for name in trees:
        total = sum(statistics.median(t) for t in nodes[name].values())
        print(f"{name} ({trees[name]}): sum of per-node medians {total:.2f} ms")


if __name__ == "__main__":
    main()
