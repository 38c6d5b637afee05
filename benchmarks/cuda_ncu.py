"""Nsight Compute evidence for the CUDA target's remaining gaps (issue #14, point 7): the
fp16 tensor-core GEMM at 4096^3 and the MiniLM-shaped encoder (batch 1, sequence 128, fp16),
profiled kernel by kernel. Run on the GPU machine (benchmarks/cuda_env.sh first):

    python benchmarks/cuda_ncu.py --out $OUT [--ncu /usr/local/cuda/bin/ncu]

Each model is built with `--target cuda --precision fp16`, then run once (CUDA graphs off, so
that every launch is a kernel ncu sees) under `ncu --section SpeedOfLight --section Occupancy
--section LaunchStats --section WarpStateStats --csv`; the raw CSV and a summary per kernel
(duration, SM and memory throughput as % of peak, achieved occupancy, registers per thread,
the top warp stall reasons) go to $OUT/cuda_ncu.json. A machine whose driver forbids
performance counters to this user (ERR_NVGPUCTRPERM) is reported as such.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "models"))

SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats")
WANTED = {  # ncu's metric names (the CSV's "Metric Name") -> the summary's keys
    "Duration": "duration",
    "Compute (SM) Throughput": "sm_throughput_pct",
    "Memory Throughput": "memory_throughput_pct",
    "DRAM Throughput": "dram_throughput_pct",
    "Achieved Occupancy": "achieved_occupancy_pct",
    "Theoretical Occupancy": "theoretical_occupancy_pct",
    "Registers Per Thread": "registers_per_thread",
    "Block Size": "block_size",
    "Grid Size": "grid_size",
    "Warp Cycles Per Issued Instruction": "warp_cycles_per_issue",
}


def feeds_of(name: str) -> dict[str, np.ndarray]:
    """The model's inputs, made again from a fixed seed (the profiled child makes its own: an
    .npz handed to it read back corrupt under ncu on the H100 machine)."""
    rng = np.random.default_rng(1)
    if name == "gemm4096":
        return {"x": rng.standard_normal((4096, 4096)).astype(np.float32)}
    from make_encoder import encoder_feeds

    return encoder_feeds(rng, 1, 128, 30522)


def run_child(artifact: str, name: str) -> None:
    """What ncu profiles: one load and one run of the artifact."""
    import pyc_cli

    with pyc_cli.load(artifact) as model:
        model.run(feeds_of(name))


def build(work: Path, name: str) -> Path:
    import onnx

    import pyc_cli

    rng = np.random.default_rng(0)
    if name == "gemm4096":
        from cuda_gemm_bench import gemm_model

        w = (rng.standard_normal((4096, 4096)) / 64).astype(np.float32)
        path = gemm_model(work, 4096, w)
    else:
        from make_encoder import make_encoder

        path = work / "encoder.onnx"
        onnx.save(make_encoder(batch=1, seq=128), path)
    artifact = work / f"{name}.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision="fp16")
    return artifact


def summarize(text: str) -> list[dict[str, object]]:
    """Per kernel launch (ncu's ID): the WANTED metrics, with their units."""
    rows = list(csv.DictReader(io.StringIO(text[text.find('"ID"'):])))
    kernels: dict[str, dict[str, object]] = {}
    for row in rows:
        entry = kernels.setdefault(row["ID"], {"kernel": row.get("Kernel Name", "")})
        key = WANTED.get(row.get("Metric Name", ""))
        if key:
            entry[key] = f"{row.get('Metric Value', '')} {row.get('Metric Unit', '')}".strip()
        if row.get("Section Name") == "WarpStateStats" and row.get("Rule Name"):
            entry.setdefault("stall_notes", []).append(row.get("Description", "")[:300])  # type: ignore[union-attr]
    return list(kernels.values())


def profile(ncu: str, artifact: Path, name: str) -> dict[str, object]:
    command = [ncu, "--csv", "--page", "details", *[a for s in SECTIONS for a in ("--section", s)],
               sys.executable, __file__, "--child", str(artifact), name]
    env = dict(os.environ, PYC_CUDA_GRAPHS="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                          timeout=900)
    result: dict[str, object] = {"command": " ".join(command[:-4] + ["<run artifact>"]),
                                 "returncode": done.returncode}
    if "ERR_NVGPUCTRPERM" in done.stdout + done.stderr:
        result["error"] = "ERR_NVGPUCTRPERM: this user may not read the GPU's performance counters"
    elif '"ID"' in done.stdout:
        result["kernels"] = summarize(done.stdout)
        result["raw_csv"] = done.stdout[done.stdout.find('"ID"'):]
    else:
        result["error"] = (done.stdout + done.stderr)[-2000:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--ncu", default=shutil.which("ncu") or "/usr/local/cuda/bin/ncu")
    parser.add_argument("--models", default="gemm4096,encoder")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(*args.child)
        return 0
    report: dict[str, object] = {"ncu": args.ncu}
    version = subprocess.run([args.ncu, "--version"], capture_output=True, text=True, check=False)
    report["ncu_version"] = version.stdout.strip().splitlines()[-1] if version.stdout else "missing"
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            artifact = build(Path(tmp), name)
            report[name] = profile(args.ncu, artifact, name)
            kernels = report[name].get("kernels", [])  # type: ignore[union-attr]
            print(f"{name}: {len(kernels)} kernel launches profiled"
                  + (f"; error: {report[name]['error'][:300]}" if "error" in report[name] else ""),
                  flush=True)
            for kernel in kernels[:12]:
                print("  " + json.dumps({k: v for k, v in kernel.items() if k != "stall_notes"}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuda_ncu.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
