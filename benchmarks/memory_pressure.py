"""The memory-pressure benchmark (issue #16, point 2): kernels chosen first and memory planned
second (sequential) against kernels and memory plan chosen together (co-selection), at the
same memory budget, on the real models.

    python benchmarks/memory_pressure.py [--models mlp,resnet50,minilm,ppocr_det,ppocr_rec]
                                         [--fraction 0.6] [--threads 2] [--repeat 20] [--rounds 6]

For each model: the latency_first arena A is planned; the budget is `--fraction` x A (60%).
Where no plan reaches that (the smallest arena any mode and selection gives is larger), the
budget is that smallest arena instead, and the report says so. Both artifacts are built with
`pyc build --memory-budget BUDGET` (the fastest mode that fits), one with `--kernel-selection
sequential`, one with the default co-selection; both arenas are reported. Outputs are checked
against onnxruntime (rtol 1e-3, atol 1e-3 x max |ref|); then both run in this process on the
same inputs, interleaved (rounds alternate which goes first), `--repeat` timed runs each per
round, `--threads` threads each. Writes benchmarks/results/memory-pressure.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import real_models  # noqa: E402

import pyc_cli  # noqa: E402
from pyc_cli.api import compile_graph  # noqa: E402
from pyc_cli.errors import PycError  # noqa: E402

SELECTIONS = ("sequential", "coselect")
DEFAULT_MODELS = "mlp,resnet50,minilm,ppocr_det,ppocr_rec"
RESULTS = ROOT / "benchmarks" / "results"


def smallest_arena(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """The smallest arena any mode reaches (memory_first; co-selection keeps it)."""
    _, ctx = compile_graph(path, "memory_first", shapes, kernel_selection="sequential")
    return int(ctx.artifacts["memory_plan"].arena_bytes)


def build(path: Path, shapes: dict[str, tuple[int, ...]], out: Path, budget: int,
          selection: str, threads: int, reuse: bool) -> dict:
    """Build (or with `reuse`, read back an artifact built earlier for the same budget and
    selection) and summarize what the build chose."""
    started = time.perf_counter()
    manifest = out / "manifest.json"
    flags = json.loads(manifest.read_text())["flags"] if manifest.is_file() else {}
    if not (reuse and flags.get("memory_budget") == budget
            and flags.get("kernel_selection", "coselect") == selection):
        pyc_cli.build(path, out, input_shapes=shapes, memory_budget=budget, force=True,
                      kernel_selection=selection, threads=threads)
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    plan = json.loads((out / "memory_plan.json").read_text())
    kernels = Counter(d.get("after") for d in decisions if d["action"] == "select_kernel")
    for d in decisions:  # co-selection's upgrades replace the first choice
        if d["action"] == "coselect_kernel":
            kernels[d["before"]] -= 1
            kernels[d["after"]] += 1
    upgrades = [d for d in decisions if d["action"] == "coselect_kernel"]
    search = next((d for d in decisions if d["action"] == "coselect"), None)
    return {"mode": plan["mode"], "arena_bytes": plan["arena_bytes"],
            "build_s": round(time.perf_counter() - started, 1),
            "budget_decision": next(d["reason"] for d in reversed(decisions)
                                    if d["action"] == "memory_budget"),
            "kernels": {k: v for k, v in sorted(kernels.items()) if v},
            "coselect_upgrades": [{"node": u["nodes"][0], "from": u["before"], "to": u["after"],
                                   "extra_bytes": u["extra_bytes"]} for u in upgrades],
            "coselect": search}


def ceiling(path: Path, shapes: dict[str, tuple[int, ...]], out: Path, threads: int,
            reuse: bool) -> dict:
    manifest = out / "manifest.json"
    if not (reuse and manifest.is_file()):
        pyc_cli.build(path, out, input_shapes=shapes, mode="latency_first", force=True,
                      threads=threads)
    plan = json.loads((out / "memory_plan.json").read_text())
    return {"mode": "latency_first", "arena_bytes": plan["arena_bytes"], "note": "no budget"}


def check(got: list[np.ndarray], expected: list[np.ndarray]) -> tuple[bool, float]:
    error = max(float(np.max(np.abs(g.astype(np.float64) - e))) if g.size else 0.0
                for g, e in zip(got, expected))
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0 for e in expected)
    ok = all(np.allclose(g, e, rtol=1e-3, atol=1e-3 * max(1.0, scale))
             for g, e in zip(got, expected))
    return ok, error


def measure(name: str, work: Path, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    path, shapes = real_models.MODELS[name](work, rng)
    feeds = real_models._feeds(path, shapes, rng)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    _, lf_ctx = compile_graph(path, "latency_first", shapes)
    lf_arena = int(lf_ctx.artifacts["memory_plan"].arena_bytes)
    asked = int(args.fraction * lf_arena)
    floor = smallest_arena(path, shapes)
    budget = max(asked, floor)
    record: dict = {"model": name, "shapes": {k: list(v) for k, v in shapes.items()},
                    "latency_first_arena_bytes": lf_arena, "asked_budget_bytes": asked,
                    "smallest_arena_bytes": floor, "budget_bytes": budget,
                    "budget_note": "as asked" if budget == asked else
                    f"{args.fraction:.0%} of the latency_first arena is below the smallest "
                    f"arena any plan reaches ({floor} bytes): both builds would fail (PYC-E011); "
                    "measured at that smallest arena instead"}
    builds, models = {}, {}
    timed = SELECTIONS + (("latency_first",) if args.ceiling else ())
    for selection in SELECTIONS:
        try:
            builds[selection] = build(path, shapes, work / f"{name}_{selection}.pyc", budget,
                                      selection, args.threads, args.reuse)
        except PycError as exc:
            builds[selection] = {"error": f"{exc.code}: {exc.what}"}
    if any("error" in b for b in builds.values()):
        record["builds"] = builds
        return record
    if args.ceiling:  # no budget, every fastest kernel: what no plan within the budget beats
        builds["latency_first"] = ceiling(path, shapes, work / f"{name}_latency_first.pyc",
                                          args.threads, args.reuse)
    record["builds"] = builds
    os.environ["PYC_NUM_THREADS"] = str(args.threads)
    samples: dict[str, list[float]] = {s: [] for s in timed}
    ratios: list[float] = []  # per round: co-selected p50 / sequential p50
    try:
        for selection in timed:
            models[selection] = pyc_cli.load(work / f"{name}_{selection}.pyc")
            ok, error = check(list(models[selection].run(feeds).values()), expected)
            builds[selection].update(matches_ort=ok, max_abs_diff=error)
        if all(builds[s]["matches_ort"] for s in timed):
            for round_ in range(args.rounds):
                order = timed if round_ % 2 == 0 else timed[::-1]
                this_round = {}
                for selection in order:
                    this_round[selection] = models[selection].time_runs(feeds, args.repeat)
                    samples[selection] += this_round[selection]
                ratios.append(float(np.median(this_round["coselect"])
                                    / np.median(this_round["sequential"])))
    finally:
        for compiled in models.values():
            compiled.close()
    if not samples["sequential"]:
        return record
    p50 = {s: float(np.median(v)) for s, v in samples.items()}
    record.update(p50_ms=p50, p95_ms={s: float(np.percentile(v, 95)) for s, v in samples.items()},
                  runs=len(samples["sequential"]),
                  latency_reduction=1.0 - p50["coselect"] / p50["sequential"],
                  # the same figure from each round alone: its spread is the noise of the load
                  round_reductions=[round(1.0 - r, 4) for r in ratios],
                  median_round_reduction=1.0 - float(np.median(ratios)))
    return record


def markdown(report: dict) -> str:
    lines = [f"# Memory-pressure benchmark: sequential vs co-selected kernels ({report['date']})",
             "", f"Command: `{report['command']}`  ", f"Machine: {report['machine']}; threads "
             f"{report['threads']} per engine; load average before/after "
             f"{report['load_before']} / {report['load_after']}  ",
             f"Timing: {report['rounds']} interleaved rounds x {report['repeat']} runs per "
             "build, in one process on the same inputs; p50 over all runs.", "",
             "| model | LF arena | budget (60%) | budget used | arena seq | arena co | mode seq "
             "| mode co | upgrades | p50 seq ms | p50 co ms | lower latency | median of rounds "
             "(min..max) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in report["models"]:
        b = r["builds"]
        if any("error" in x for x in b.values()):
            lines.append(f"| {r['model']} | {r['latency_first_arena_bytes']} | "
                         f"{r['asked_budget_bytes']} | {r['budget_bytes']} | "
                         + " | ".join(str(x.get("error", "")) for x in b.values())
                         + " | | | | | | | |")
            continue
        p50 = r.get("p50_ms", {})
        lines.append(
            f"| {r['model']} | {r['latency_first_arena_bytes']} | {r['asked_budget_bytes']} | "
            f"{r['budget_bytes']} | {b['sequential']['arena_bytes']} | "
            f"{b['coselect']['arena_bytes']} | {b['sequential']['mode']} | "
            f"{b['coselect']['mode']} | {len(b['coselect']['coselect_upgrades'])} | "
            + (f"{p50['sequential']:.3f} | {p50['coselect']:.3f} | "
               f"{r['latency_reduction']:+.1%} | {r['median_round_reduction']:+.1%} "
               f"({min(r['round_reductions']):+.0%}..{max(r['round_reductions']):+.0%}) |"
               if p50 else "not timed | | | |"))
    lines += ["", "Budget notes:", ""]
    for r in report["models"]:
        b = r["builds"]
        same = not any("error" in x for x in b.values()) \
            and not b["coselect"]["coselect_upgrades"] and b["coselect"]["kernels"] == \
            b["sequential"]["kernels"] and b["coselect"]["arena_bytes"] == \
            b["sequential"]["arena_bytes"]
        lines.append(f"- {r['model']}: {r['budget_note']}" + (
            "; both builds chose the same kernels and arena (a control: any difference is "
            "the noise of the load)" if same else ""))
    ceilings = [r for r in report["models"] if "latency_first" in r.get("p50_ms", {})]
    if ceilings:
        lines += ["", "Ceiling: latency_first without a budget (its arena is the LF arena above), "
                  "timed in the same rounds:", ""]
        lines += [f"- {r['model']}: p50 {r['p50_ms']['latency_first']:.3f} ms, "
                  f"{1 - r['p50_ms']['latency_first'] / r['p50_ms']['sequential']:+.1%} against "
                  "sequential" for r in ceilings]
    lines += ["", "Bar (issue #16 point 2): co-selection >= 10% lower latency at the same arena."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--fraction", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--name", default="memory-pressure")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time latency_first without a budget (every fastest kernel)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the artifacts a previous run left in --work (same budget and "
                             "selection) instead of building them again")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "pyc-memory-pressure")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": "python benchmarks/memory_pressure.py " + " ".join(argv or sys.argv[1:]),
              "machine": f"{platform.machine()} {os.cpu_count()} cpus",
              "threads": args.threads, "repeat": args.repeat, "rounds": args.rounds,
              "fraction": args.fraction, "load_before": [round(x, 2) for x in os.getloadavg()],
              "models": []}
    for name in args.models.split(","):
        why = real_models.unavailable(name)
        if why:
            print(f"{name}: skipped ({why})")
            continue
        record = measure(name, args.work, args)
        report["models"].append(record)
        print(json.dumps({k: record.get(k) for k in ("model", "budget_bytes", "p50_ms",
                                                      "latency_reduction")}), flush=True)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
