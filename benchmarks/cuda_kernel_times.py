"""Where a CUDA artifact's run time goes, kernel by kernel: each case built for sm_90, checked
against onnxruntime, then its launches captured into one CUDA graph with an event recorded
between every two kernels; the graph replayed `--repeat` times per round and each kernel's
time (event to event) taken as the median over replays, so a row's time holds the kernel and
the gap before the next one as a graph replay sees them (event nodes add a little of their own:
the sum is compared with the plain graph's time in the output).

    python benchmarks/cuda_kernel_times.py --out $OUT/kernel_times.json \
        [--cases encoder_b1_fp16,resnet50_b32_fp16] [--repeat 200] [--rounds 3]

Writes the JSON (device, per case: the plain graph's median, the evented sum, every launch's
kernel name, grid, block, shared bytes and median us) and prints per case the launches grouped
by kernel template, largest share first."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_launch_ab import parse_case  # noqa: E402
from cuda_table import Case, check, machine, make_model, reference  # noqa: E402


def evented_times(model: Any, repeat: int, rounds: int) -> list[list[float]]:
    """Per launch, the milliseconds between the events around it, one median per round."""
    driver, stream = model._driver, model._stream
    count = len(model._launches)
    events = [driver("cuEventCreate", 0) for _ in range(count + 1)]

    def enqueue() -> None:
        for index in range(count):
            driver("cuEventRecord", events[index], stream)
            model._launch_all((index,))
        driver("cuEventRecord", events[count], stream)

    from pyc_cli.runtime.cuda import _Graph

    graph = _Graph(driver, stream, enqueue)
    per_round: list[list[float]] = [[] for _ in range(count)]
    try:
        for _ in range(rounds):
            samples: list[list[float]] = [[] for _ in range(count)]
            for replay in range(repeat + 10):
                graph.launch(stream)
                driver("cuEventSynchronize", events[count])
                if replay < 10:
                    continue
                for index in range(count):
                    samples[index].append(float(driver("cuEventElapsedTime", events[index],
                                                       events[index + 1])))
            for index in range(count):
                per_round[index].append(statistics.median(samples[index]))
    finally:
        graph.destroy()
        for event in events:
            driver.cu.cuEventDestroy(event)
    return per_round


def measure(case: Case, work: Path, repeat: int, rounds: int) -> dict[str, Any]:
    import pyc_cli

    path, feeds = make_model(case, work)
    expected = reference(path, feeds)
    artifact = pyc_cli.build(path, work / f"{case.name}.pyc", target="cuda", arch="sm_90",
                             precision=case.precision, force=True).artifact
    plan = json.loads((artifact / "src" / "launches.json").read_text())["launches"]
    model = pyc_cli.load(artifact)
    try:
        model.poison()
        outputs = model.run(feeds)
        record: dict[str, Any] = {"check": {k: check(outputs[k], v, case.precision, "pyc")
                                            for k, v in expected.items()}}
        record["ok"] = all(c["ok"] for c in record["check"].values())
        plain = [statistics.median(model.time_kernels(feeds, repeat, warmup=10)) for _ in range(rounds)]
        per_launch = evented_times(model, repeat, rounds)
    finally:
        model.close()
    record["graph_ms"] = statistics.median(plain)
    launches = []
    for launch, times in zip(plan, per_launch):
        launches.append({"kernel": launch["kernel"], "grid": launch["grid"], "block": launch["block"],
                         "shared_bytes": launch["shared_bytes"], "us": 1000 * statistics.median(times)})
    record["launches"] = launches
    record["evented_sum_ms"] = sum(row["us"] for row in launches) / 1000
    return record


def family(kernel: str) -> str:
    """A kernel function's template family (its name without the trailing instance number)."""
    head, _, tail = kernel.rpartition("_")
    return head if tail.isdigit() else kernel


def summary(name: str, record: dict[str, Any]) -> str:
    if "launches" not in record:
        return f"## {name}: {record.get('error', 'failed')}"
    groups: dict[str, list[float]] = defaultdict(list)
    for row in record["launches"]:
        groups[family(row["kernel"])].append(row["us"])
    total = sum(sum(v) for v in groups.values())
    lines = [f"## {name}: graph {record['graph_ms']:.4f} ms, evented sum {record['evented_sum_ms']:.4f} ms, "
             f"{len(record['launches'])} launches, output ok: {record['ok']}",
             "| kernel family | launches | us total | share | us each (min..max) |",
             "|---|---:|---:|---:|---|"]
    for fam, times in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"| {fam} | {len(times)} | {sum(times):.1f} | {100 * sum(times) / total:.0f}% | "
                     f"{min(times):.1f}..{max(times):.1f} |")
    lines.append("\nLaunches in order (us): " + ", ".join(
        f"{row['kernel']} {row['us']:.1f} {row['grid']}" for row in record["launches"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default="encoder_b1_fp16,resnet50_b32_fp16")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "cases": {}}
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for text in args.cases.split(","):
            case = parse_case(text)
            try:
                record = measure(case, Path(scratch), args.repeat, args.rounds)
            except Exception as error:  # noqa: BLE001 - one case failing keeps the others
                record = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            failed |= not record.get("ok")
            result["cases"][case.name] = record
            print(summary(case.name, record), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
