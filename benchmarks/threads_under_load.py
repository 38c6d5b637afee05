"""The wait policy of the OpenMP team on an idle and on a loaded machine, in one run.

    python benchmarks/threads_under_load.py [--model mlp] [--threads 2] [--runs 1500]
        [--busy 2] [--policies default,spin:1000,spin:10000,passive,adaptive] [--out results.json]

A team whose partner thread the OS has descheduled waits for it at every barrier; libgomp's
default wait spins (~300k iterations) on the core the partner needs. For each wait policy (set
in the environment of a fresh process before libgomp loads: `default`, `spin:N` =
GOMP_SPINCOUNT=N, `passive` = OMP_WAIT_POLICY=passive, all on a fixed team
(PYC_ADAPTIVE_THREADS=0); `adaptive`: PyC's default adaptive team; `onnxruntime`: onnxruntime on the
same model and threads, for reference), the model (real_models.py builds it,
PyC with `--threads`) runs `--runs` back-to-back calls of its Python API after 50 warm-up
calls, once on the machine as it is and once while `--busy` processes spin on the CPU (plain
Python busy loops, the load another tenant or the caller's own threads put on the cores);
prints and writes p50/p95/mean per (policy, load). The policies run interleaved in one process
tree, so they see the same machine; quote ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

POLICY_ENV = {"default": {}, "adaptive": {}, "passive": {"OMP_WAIT_POLICY": "passive"}}


def policy_env(policy: str) -> dict[str, str]:
    if policy == "onnxruntime":
        return {"PYC_ENGINE": "ort"}
    if policy.startswith("spin:"):
        return {"GOMP_SPINCOUNT": policy.removeprefix("spin:")}
    return POLICY_ENV[policy]


def busy_loop(stop: float) -> None:
    while time.time() < stop:
        pass


def child(artifact: str, feeds: str, runs: int) -> None:
    """One policy's timings (the policy is in this process's environment; PYC_ENGINE=ort:
    onnxruntime on the source model instead, with its default spinning workers)."""
    arrays = dict(np.load(feeds))
    if os.environ.get("PYC_ENGINE") == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ["PYC_NUM_THREADS"])
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(Path(artifact).parent / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        call = lambda: session.run(None, arrays)  # noqa: E731
        print(json.dumps(latencies(call, runs)))
        return
    import pyc_cli

    with pyc_cli.load(artifact) as model:
        print(json.dumps(latencies(lambda: model.run(arrays), runs)))


def latencies(call, runs: int) -> list[float]:  # noqa: ANN001
    """Milliseconds per call after 50 warm-up calls (memprobe.timed makes the last)."""
    from memprobe import timed

    for _ in range(49):
        call()
    return timed(call, runs)


def timed(policy: str, artifact: Path, feeds: Path, runs: int, threads: int) -> list[float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PYC_ENGINE")}
    # the wait policies act on a fixed team; `adaptive`: PyC's default, the adaptive team
    env.update(policy_env(policy), PYC_NUM_THREADS=str(threads),
               PYC_ADAPTIVE_THREADS="1" if policy == "adaptive" else "0")
    done = subprocess.run([sys.executable, __file__, "--child", str(artifact), str(feeds),
                           str(runs)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(times: list[float]) -> dict[str, float]:
    return {"p50": float(np.median(times)), "p95": float(np.percentile(times, 95)),
            "mean": float(np.mean(times))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--busy", type=int, default=2, help="spinning processes for the load")
    parser.add_argument("--policies",
                        default="default,spin:1000,spin:10000,passive,adaptive,onnxruntime")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    from real_models import MODELS, _feeds

    import pyc_cli

    policies = args.policies.split(",")
    results: dict[str, dict[str, dict[str, float]]] = {p: {} for p in policies}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source, shapes = MODELS[args.model](work, np.random.default_rng(0))
        path = work / "model.onnx"  # beside the artifact, for the onnxruntime child
        if source != path:
            path.write_bytes(source.read_bytes())
        feeds = work / "feeds.npz"
        np.savez(feeds, **_feeds(path, shapes, np.random.default_rng(1)))
        artifact = work / "model.pyc"
        pyc_cli.build(path, artifact, input_shapes=shapes, threads=args.threads)
        for load in ("idle", f"busy{args.busy}"):
            for policy in policies:
                workers = []
                if load != "idle":
                    stop = time.time() + 600
                    workers = [multiprocessing.Process(target=busy_loop, args=(stop,))
                               for _ in range(args.busy)]
                    for worker in workers:
                        worker.start()
                try:
                    stats = summary(timed(policy, artifact, feeds, args.runs, args.threads))
                finally:
                    for worker in workers:
                        worker.terminate()
                        worker.join()
                results[policy][load] = stats
                print(f"{args.model} threads={args.threads} {load:6s} {policy:12s} "
                      f"p50 {stats['p50']:.3f} p95 {stats['p95']:.3f} mean {stats['mean']:.3f} ms",
                      flush=True)
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "threads": args.threads,
                                        "runs": args.runs, "busy": args.busy,
                                        "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
