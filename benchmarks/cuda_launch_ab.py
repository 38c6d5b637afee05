"""Programmatic dependent launch, A/B on one GPU in one process: each model built once for sm_90,
loaded twice (PYC_CUDA_PROGRAMMATIC=0: every kernel launched after the previous one ends; =1:
kernels after the first start as programmatic dependents, waiting in griddepcontrol.wait), rounds
interleaved; per round the median GPU time of the run's kernels replayed as a CUDA graph (CUDA
events, Model.time_kernels). Both variants' outputs are checked against onnxruntime (as
cuda_table.py checks them) and against each other bitwise (same kernels, same order):

    python benchmarks/cuda_launch_ab.py --out $OUT/cuda_launch_ab.json [--cases encoder_b1_fp16,...]

With `--compare tune` the variants are instead two builds of each model: as it builds without a
tuning database, and after `--tune` on this GPU (database under --out's folder; kernels then
differ, so the outputs are checked against onnxruntime only).

Writes the JSON (device, every round, medians, the ratio of the first variant's time to the
second's) and prints a markdown table. Exit status 1 when an output is wrong or the launch
variants differ."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_table import Case, check, machine, make_model, reference  # noqa: E402

DEFAULT_CASES = "encoder_b1_fp16,encoder_b8_fp16,resnet50_b1_fp16,mlp_b1_fp16,encoder_b1_fp32"


@dataclass(frozen=True)
class Variant:
    """One way to build and load a case: build options, and environment read at load."""

    build: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    programmatic: bool | None = None  # what model.stats must say (None: not checked)


def variant_sets(out: Path, tune_budget: float) -> dict[str, dict[str, Variant]]:
    tuned = {"tune": True, "tuning_db": out.parent / "cuda_tuning.json", "tune_budget": tune_budget}
    return {"launch": {"plain": Variant(env={"PYC_CUDA_PROGRAMMATIC": "0"}, programmatic=False),
                       "programmatic": Variant(env={"PYC_CUDA_PROGRAMMATIC": "1"},
                                               programmatic=True)},
            "tune": {"untuned": Variant(build={"tuning_db": out.parent / "cuda_untuned.json"}),
                     "tuned": Variant(build=tuned)}}


def parse_case(text: str) -> Case:
    model, batch, precision = text.split("_")
    return Case(model, int(batch.removeprefix("b")), precision)


def load_variants(case: Case, path: Path, work: Path,
                  variants: dict[str, Variant]) -> tuple[dict[str, Any], int]:
    """Each variant's model (one build per distinct set of build options: the flags are read
    when a model loads), and the launches of the first build."""
    import pyc_cli

    models, builds, launches = {}, {}, 0
    for name, variant in variants.items():
        key = repr(sorted(variant.build.items()))
        if key not in builds:
            builds[key] = pyc_cli.build(path, work / f"{case.name}-{len(builds)}.pyc", target="cuda",
                                        arch="sm_90", precision=case.precision, force=True,
                                        **variant.build).artifact
            if len(builds) == 1:
                plan = json.loads((builds[key] / "src" / "launches.json").read_text())
                launches = len(plan["launches"])
        saved = {k: os.environ.get(k) for k in variant.env}
        os.environ.update(variant.env)
        try:
            models[name] = pyc_cli.load(builds[key])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
    return models, launches


def measure(case: Case, work: Path, rounds: int, repeat: int,
            variants: dict[str, Variant]) -> dict[str, Any]:
    path, feeds = make_model(case, work)
    expected = reference(path, feeds)
    models, launches = load_variants(case, path, work, variants)
    record: dict[str, Any] = {"launches": launches, "rounds_ms": {name: [] for name in variants}}
    try:
        outputs = {}
        for name, model in models.items():
            wanted = variants[name].programmatic
            assert wanted is None or model.stats.programmatic_launch is wanted, name
            model.poison()
            outputs[name] = model.run(feeds)
            record[f"check_{name}"] = {k: check(outputs[name][k], v, case.precision, "pyc")
                                       for k, v in expected.items()}
        first, second = list(variants)
        same_kernels = all(not v.build for v in variants.values())
        record["bitwise_equal"] = all(np.array_equal(outputs[first][k], outputs[second][k],
                                                     equal_nan=True) for k in expected)
        record["ok"] = (record["bitwise_equal"] or not same_kernels) and all(
            c["ok"] for name in variants for c in record[f"check_{name}"].values())
        if not record["ok"]:
            return record
        for _ in range(rounds):
            for name, model in models.items():
                times = model.time_kernels(feeds, repeat, warmup=10)
                record["rounds_ms"][name].append(statistics.median(times))
    finally:
        for model in models.values():
            model.close()
    record["median_ms"] = {name: statistics.median(v) for name, v in record["rounds_ms"].items()}
    record["ratio"] = record["median_ms"][first] / record["median_ms"][second]
    return record


def markdown(rows: dict[str, dict[str, Any]], names: list[str]) -> str:
    first, second = names
    lines = [f"| case | launches | {first} ms | {second} ms | {first} / {second} |",
             "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        if not row.get("ok"):
            lines.append(f"| {name} | - | wrong output | - | - |")
            continue
        median = row["median_ms"]
        lines.append(f"| {name} | {row['launches']} | {median[first]:.4f} | "
                     f"{median[second]:.4f} | {row['ratio']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--compare", choices=("launch", "tune"), default="launch")
    parser.add_argument("--tune-budget", type=float, default=60.0,
                        help="seconds --tune may time kernels, per case (--compare tune)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=100, help="graph replays timed per round")
    args = parser.parse_args(argv)
    variants = variant_sets(args.out, args.tune_budget)[args.compare]
    rows: dict[str, dict[str, Any]] = {}
    result = {"machine": machine(), "command": " ".join(sys.argv), "compare": args.compare,
              "rounds": args.rounds, "repeat": args.repeat, "rows": rows}
    with tempfile.TemporaryDirectory(prefix="pyc-ab-") as scratch:
        for text in args.cases.split(","):
            rows[text] = measure(parse_case(text), Path(scratch), args.rounds, args.repeat,
                                 variants)
            args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
            print(markdown({text: rows[text]}, list(variants)).splitlines()[-1], flush=True)
    print(markdown(rows, list(variants)))
    return 0 if all(row.get("ok") for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
