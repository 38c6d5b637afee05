"""Programmatic dependent launch, A/B on one GPU in one process: each model built once for sm_90,
loaded twice (PYC_CUDA_PROGRAMMATIC=0: every kernel launched after the previous one ends; =1:
kernels after the first start as programmatic dependents, waiting in griddepcontrol.wait), rounds
interleaved; per round the median GPU time of the run's kernels replayed as a CUDA graph (CUDA
events, Model.time_kernels). Both variants' outputs are checked against onnxruntime (as
cuda_table.py checks them) and against each other bitwise (same kernels, same order):

    python benchmarks/cuda_launch_ab.py --out $OUT/cuda_launch_ab.json [--cases encoder_b1_fp16,...]

Writes the JSON (device, every round, medians, the ratio plain / programmatic) and prints a
markdown table. Exit status 1 when an output is wrong or the variants differ."""

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_table import Case, check, machine, make_model, reference  # noqa: E402

DEFAULT_CASES = "encoder_b1_fp16,encoder_b8_fp16,resnet50_b1_fp16,mlp_b1_fp16,encoder_b1_fp32"
VARIANTS = {"plain": "0", "programmatic": "1"}


def parse_case(text: str) -> Case:
    model, batch, precision = text.split("_")
    return Case(model, int(batch.removeprefix("b")), precision)


def load_variants(artifact: Path) -> dict[str, Any]:
    import pyc_cli

    models = {}
    for name, value in VARIANTS.items():  # the flag is read when a model loads
        os.environ["PYC_CUDA_PROGRAMMATIC"] = value
        models[name] = pyc_cli.load(artifact)
    os.environ.pop("PYC_CUDA_PROGRAMMATIC")
    return models


def measure(case: Case, work: Path, rounds: int, repeat: int) -> dict[str, Any]:
    import pyc_cli

    path, feeds = make_model(case, work)
    expected = reference(path, feeds)
    built = pyc_cli.build(path, work / f"{case.name}.pyc", target="cuda", arch="sm_90",
                          precision=case.precision, force=True)
    models = load_variants(built.artifact)
    record: dict[str, Any] = {"launches": None, "rounds_ms": {name: [] for name in VARIANTS}}
    try:
        outputs = {}
        for name, model in models.items():
            assert model.stats.programmatic_launch is (name == "programmatic"), name
            model.poison()
            outputs[name] = model.run(feeds)
            record[f"check_{name}"] = {k: check(outputs[name][k], v, case.precision, "pyc")
                                       for k, v in expected.items()}
        record["bitwise_equal"] = all(np.array_equal(outputs["plain"][k], outputs["programmatic"][k],
                                                     equal_nan=True) for k in expected)
        record["ok"] = record["bitwise_equal"] and all(
            c["ok"] for name in VARIANTS for c in record[f"check_{name}"].values())
        if not record["ok"]:
            return record
        for _ in range(rounds):
            for name, model in models.items():
                times = model.time_kernels(feeds, repeat, warmup=10)
                record["rounds_ms"][name].append(statistics.median(times))
    finally:
        for model in models.values():
            model.close()
    launches = json.loads((built.artifact / "src" / "launches.json").read_text())["launches"]
    record["launches"] = len(launches)
    record["median_ms"] = {name: statistics.median(v) for name, v in record["rounds_ms"].items()}
    record["plain_over_programmatic"] = record["median_ms"]["plain"] / record["median_ms"]["programmatic"]
    return record


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| case | launches | plain ms | programmatic ms | plain / programmatic |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if not row.get("ok"):
            lines.append(f"| {name} | - | wrong output | - | - |")
            continue
        median = row["median_ms"]
        lines.append(f"| {name} | {row['launches']} | {median['plain']:.4f} | "
                     f"{median['programmatic']:.4f} | {row['plain_over_programmatic']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=100, help="graph replays timed per round")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    result = {"machine": machine(), "command": " ".join(sys.argv), "rounds": args.rounds,
              "repeat": args.repeat, "rows": rows}
    with tempfile.TemporaryDirectory(prefix="pyc-launch-ab-") as scratch:
        for text in args.cases.split(","):
            rows[text] = measure(parse_case(text), Path(scratch), args.rounds, args.repeat)
            args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
            print(markdown({text: rows[text]}).splitlines()[-1], flush=True)
    print(markdown(rows))
    return 0 if all(row.get("ok") for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
