"""Where PyC's time goes on the real models, against this machine's ceilings (issue #13, point 5:
"report what you reach with the profile that explains any remaining gap").

    python benchmarks/roofline.py [--models mlp,resnet50,minilm,ppocr_det,ppocr_rec,ppocr_cls,silero]
                                  [--threads 1] [--repeat 20] [--bench benchmarks/results/bench-real.json]

1. The ceilings: benchmarks/roofline_peak.c, compiled here with -march=native, measures the
   float32 FMA throughput of one core and of `--threads` cores and the triad memory bandwidth.
2. Each model is built by PyC (`--threads`) and run with `pyc run --profile` (every kernel call
   timed, `--repeat` runs, medians): per kernel, its time and its GFLOP/s, and what fraction of
   the FMA ceiling that is. Kernels are grouped by name.
3. Where `--bench` names a `bench.py --suite real` result, each engine's end-to-end p50 there is
   turned into the model's achieved GFLOP/s (the model's flops from PyC's op registry, the same
   count for every engine) and weight bytes per second, against the same ceilings (weights up to
   ~24 MB stay in the last-level cache between runs, hence the cached-read ceiling).

Writes benchmarks/results/roofline.json and prints the tables. The machine is shared: run it
when nothing else is (the ceilings are measured in the same run, so the fractions hold).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_models  # noqa: E402
from layout_ab import profiled_run  # noqa: E402

DEFAULT_MODELS = "mlp,mlp_b64,resnet50,minilm,ppocr_det,ppocr_rec,ppocr_cls,silero"


def ceilings(threads: int, work: Path) -> dict[str, float]:
    binary = work / "roofline_peak"
    subprocess.run([os.environ.get("CC", "cc"), "-O3", "-march=native", "-fopenmp",
                    str(ROOT / "benchmarks" / "roofline_peak.c"), "-o", str(binary)], check=True)
    done = subprocess.run([str(binary), str(threads)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def profile(name: str, threads: int, repeat: int, work: Path) -> dict[str, Any]:
    """Build `name` and time its kernels; returns the profile's calls and the weight bytes."""
    rng = np.random.default_rng(0)
    path, shapes = real_models.MODELS[name](work, rng)
    feeds = real_models._feeds(path, shapes, rng)
    np.savez(work / f"{name}.npz", **feeds)
    artifact = work / f"{name}.pyc"
    command = [sys.executable, "-m", "pyc_cli", "build", str(path), "-o", str(artifact), "-q",
               "--threads", str(threads), "--force"]
    for input_name, shape in shapes.items():
        command += ["--input-shape", f"{input_name}={','.join(map(str, shape))}"]
    subprocess.run(command, check=True, cwd=ROOT)
    result = profiled_run(artifact, repeat, threads, work / f"{name}.npz")
    return {"calls": result["profile"]["calls"], "total_ms": result["profile"]["total_ms"],
            "p50_ms": result["latency_ms"]["p50"],
            "weight_bytes": (artifact / "weights.bin").stat().st_size}


def summarize(name: str, prof: dict[str, Any], peak: float, bench: dict[str, Any] | None,
              peaks: dict[str, float]) -> dict[str, Any]:
    groups: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    total_flops = 0.0
    for call in prof["calls"]:
        flops = (call.get("gflops") or 0.0) * call["median_ms"] * 1e6
        total_flops += flops
        group = groups[call["kernel"]]
        group[0] += 1
        group[1] += call["median_ms"]
        group[2] += flops
    kernels = [{"kernel": kernel, "calls": int(count), "ms": ms,
                "share": ms / prof["total_ms"] if prof["total_ms"] else 0.0,
                "gflops": flops / ms / 1e6 if ms else 0.0,
                "of_fma_peak": flops / ms / 1e6 / peak if ms and peak else 0.0}
               for kernel, (count, ms, flops) in groups.items()]
    kernels.sort(key=lambda k: -k["ms"])
    out: dict[str, Any] = {
        "model": name, "gflop": total_flops / 1e9, "kernel_ms": prof["total_ms"],
        "profiled_p50_ms": prof["p50_ms"], "weight_bytes": prof["weight_bytes"],
        "kernel_gflops": total_flops / prof["total_ms"] / 1e6 if prof["total_ms"] else 0.0,
        "kernels": kernels}
    if bench is not None:
        engines = {}
        for engine, row in bench.items():
            p50 = row.get("p50_ms")
            if not p50:
                continue
            engines[engine] = {"p50_ms": p50, "gflops": total_flops / p50 / 1e6,
                               "of_fma_peak_all": total_flops / p50 / 1e6 / peaks["fma_gflops_all"],
                               "weight_gbs": prof["weight_bytes"] / p50 / 1e6,
                               "of_cached_read_all": prof["weight_bytes"] / p50 / 1e6
                               / peaks["read24mb_gbs_all"]}
        out["engines"] = engines
    return out


def bench_threads(path: Path | None) -> int | None:
    """The thread count a `bench.py --suite real` result ran its engines with."""
    if path is None or not path.exists():
        return None
    return int(json.loads(path.read_text())["machine"].get("threads", 0)) or None


def bench_rows(path: Path | None) -> dict[str, dict[str, Any]]:
    """Per model name: per engine, the p50 of a `bench.py --suite real` result."""
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text())
    rows: dict[str, dict[str, Any]] = {}
    for case in data.get("results", []):
        latency = case.get("latency") or {}
        rows[case["model"]] = {
            engine: {"p50_ms": (stats or {}).get("p50_ms")} for engine, stats in latency.items()}
    return rows


def print_report(peaks: dict[str, float], models: list[dict[str, Any]]) -> None:
    print(f"ceilings: FMA {peaks['fma_gflops_1']:.0f} GFLOP/s on one core, "
          f"{peaks['fma_gflops_all']:.0f} on {peaks['threads']}; triad "
          f"{peaks['triad_gbs_1']:.1f} GB/s on one core, {peaks['triad_gbs_all']:.1f} on "
          f"{peaks['threads']}; reads of a 24 MB buffer (last-level cache) "
          f"{peaks['read24mb_gbs_1']:.0f} / {peaks['read24mb_gbs_all']:.0f} GB/s")
    for m in models:
        print(f"\n{m['model']}: {m['gflop']:.2f} GFLOP, kernels {m['kernel_ms']:.2f} ms at "
              f"{m['kernel_gflops']:.0f} GFLOP/s; weights {m['weight_bytes'] / 1e6:.1f} MB")
        for engine, e in sorted(m.get("engines", {}).items()):
            print(f"  {engine:12s} p50 {e['p50_ms']:8.3f} ms  {e['gflops']:6.0f} GFLOP/s "
                  f"({100 * e['of_fma_peak_all']:4.0f}% of FMA)  weights {e['weight_gbs']:6.1f} GB/s "
                  f"({100 * e['of_cached_read_all']:4.0f}% of cached reads)")
        for k in m["kernels"][:8]:
            print(f"    {k['kernel']:28s} {k['calls']:4d} calls {k['ms']:8.3f} ms "
                  f"{100 * k['share']:5.1f}%  {k['gflops']:6.1f} GFLOP/s "
                  f"({100 * k['of_fma_peak']:4.0f}% of one core's FMA)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--bench", type=Path, default=ROOT / "benchmarks/results/bench-real.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/roofline.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyc-roofline-") as tmp:
        work = Path(tmp)
        # the engines' lines compare with the ceilings at the benchmark's thread count (its
        # engines ran with that many), PyC's kernels with those at --threads
        peaks = ceilings(bench_threads(args.bench) or args.threads, work)
        bench = bench_rows(args.bench)
        per_thread_peak = peaks["fma_gflops_1"] * args.threads
        models = []
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            prof = profile(name, args.threads, args.repeat, work)
            models.append(summarize(name, prof, per_thread_peak, bench.get(name), peaks))
    print_report(peaks, models)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "ceilings": peaks,
                                    "threads": args.threads, "models": models}, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
