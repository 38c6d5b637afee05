"""PyC, onnxruntime and OpenVINO at the same thread count on a quiet host and while busy
processes load it.

    python benchmarks/under_load.py [--models mlp,ppocr_cls,ppocr_det,resnet50] [--threads 2]
        [--busy 0,1,2] [--engines pyc,ort] [--rounds 5] [--seconds 0.4] [--interleave]
        [--period-ms 20] [--out benchmarks/results/under-load]

Each engine serves one model in its own process (memprobe.py --serve: one heap and one thread
pool each); engines are:
  `pyc`                 this tree's artifact, PYC_NUM_THREADS=--threads;
  `ort`                 onnxruntime, intra_op_num_threads=--threads, inter_op 1;
  `openvino`            OpenVINO's CPU plugin, --threads inference threads, pinned to f32;
  `pyc@TREE`            the artifact built and run by another PyC tree (the A/B's base: a plain
                        `git archive BASE | tar -x -C TREE`);
  `ENGINE+VAR=VALUE`    that engine with VAR=VALUE in its environment (e.g.
                        `pyc+PYC_ADAPTIVE_THREADS=0`, `pyc+PYC_NUM_THREADS=1`).
A load level in --busy is `N` (N plain busy-loop processes spinning at this process's priority;
0: no synthetic load, the machine as it is) or `N@D[/P]` (N processes each spinning the fraction
D of every P ms, default --period-ms, and sleeping the rest: with a short period a tenant that
comes and goes within a run, so a team thread is descheduled for a few milliseconds at random
points of it; with a period of seconds, loaded and quiet phases that each span many runs, as
another process's compile or test job on a shared machine). For each level, --rounds rounds
each time every engine for about --seconds (the run count per model is fixed from a quiet
calibration, so every level times the same number of runs); the engines alternate inside each
round, so they see the same load. With --gate S each level's turn starts when no other thread
has been runnable for 0.5 s (waiting up to S seconds; the waits are in the JSON): on a host
whose other tenants come and go, the quiet level is then quiet. With --interleave the levels
alternate inside each round too
(round 1: quiet, loaded, ...; round 2: ...), so the quiet and loaded timings of an engine see
the same drift of the host and their ratio is paired. Prints and writes p50/p95 per (model,
load, engine), the ratios to the first engine named `ort` (or the first engine), each engine's
p50 at the level over its p50 at the first level (`slowdown`), and the 1-minute load average at
each level, to OUT.json and OUT.md. Quote ratios, not absolute times: the host's other tenants
are not ours.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def busy_loop(duty: float = 1.0, period_ms: float = 20.0) -> None:
    """Spins the fraction `duty` of every `period_ms` and sleeps the rest (forever)."""
    period = period_ms / 1e3
    while True:
        start = time.perf_counter()
        while time.perf_counter() - start < duty * period:
            pass
        if duty < 1.0:
            time.sleep(max(0.0, period - (time.perf_counter() - start)))


Level = tuple[int, float, float]  # busy processes, duty, period in ms (0: --period-ms)


def parse_level(text: str) -> Level:
    """`2` -> (2, 1.0, 0); `1@0.5` -> (1, 0.5, 0); `1@0.5/4000` -> (1, 0.5, 4000.0)."""
    count, _, rest = text.partition("@")
    duty, _, period = rest.partition("/")
    return int(count), float(duty) if duty else 1.0, float(period) if period else 0.0


def level_name(level: Level) -> str:
    count, duty, period = level
    return (f"busy{count}" + (f"@{duty:g}" if duty < 1.0 else "")
            + (f"/{period:g}" if period and duty < 1.0 else ""))


class Server:
    """One engine's memprobe --serve process."""

    def __init__(self, name: str, engine: str, target: Path, feeds: Path, threads: int,
                 env: dict[str, str]) -> None:
        self.name = name
        command = [sys.executable, str(HERE / "memprobe.py"), "--engine", engine, "--target",
                   str(target), "--inputs", str(feeds), "--threads", str(threads), "--serve"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.ask(None)  # the "ready" line

    def ask(self, command: str | None) -> Any:  # noqa: ANN401  (a JSON reply)
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the server ended")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, BrokenPipeError, json.JSONDecodeError):
            self.ask("quit")  # answered by the end of the stream
        self.process.wait(timeout=30)


def parse_engine(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """`pyc@TREE+VAR=V+...` -> ("pyc", TREE, {VAR: V})."""
    head, *pairs = spec.split("+")
    base, _, tree = head.partition("@")
    if base not in ("pyc", "ort", "openvino"):
        raise SystemExit(f"unknown engine {spec!r} (pyc, ort, openvino, pyc@TREE, "
                         "ENGINE+VAR=VALUE)")
    return base, tree or None, dict(pair.split("=", 1) for pair in pairs)


def build(tree: Path, source: Path, shapes: dict, out: Path, threads: int) -> Path:
    """The artifact `tree` builds (in a fresh process with PYTHONPATH=tree)."""
    code = ("import sys, json, pyc_cli; a = json.loads(sys.argv[1]); "
            "pyc_cli.build(a['src'], a['out'], input_shapes={k: tuple(v) for k, v in "
            "a['shapes'].items()}, threads=a['threads'], force=True)")
    spec = {"src": str(source), "out": str(out), "shapes": shapes, "threads": threads}
    # cwd=tree: `python -c` puts the working directory ahead of PYTHONPATH on sys.path
    subprocess.run([sys.executable, "-c", code, json.dumps(spec)], check=True, cwd=tree,
                   env=dict(os.environ, PYTHONPATH=str(tree)))
    return out


def servers_for(model: str, work: Path, engines: list[str], threads: int) -> list[Server]:
    from real_models import MODELS, _feeds

    source, shapes = MODELS[model](work, np.random.default_rng(0))
    feeds = work / f"{model}.npz"
    np.savez(feeds, **_feeds(source, shapes, np.random.default_rng(1)))
    artifacts: dict[str, Path] = {}
    servers = []
    for spec in engines:
        base, tree, extra = parse_engine(spec)
        env = {k: v for k, v in os.environ.items() if k != "PYC_NUM_THREADS"}
        target = source
        if base == "pyc":
            root = Path(tree).resolve() if tree else ROOT
            key = str(root)
            if key not in artifacts:
                artifacts[key] = build(root, source, {k: list(v) for k, v in shapes.items()},
                                       work / f"{model}-{len(artifacts)}.pyc", threads)
            target = artifacts[key]
            env["PYTHONPATH"] = str(root)
        team = int(extra.pop("PYC_NUM_THREADS", threads))  # memprobe sets it from --threads
        env.update(extra)
        servers.append(Server(spec, base, target, feeds, team, env))
    return servers


def summary(times: list[float]) -> dict[str, float]:
    return {"p50": float(np.median(times)), "p95": float(np.percentile(times, 95)),
            "mean": float(np.mean(times)), "runs": len(times)}


def measure_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        servers = servers_for(model, Path(tmp), args.engines.split(","), args.threads)
        try:
            probe = min(float(np.median(s.ask("time 5"))) for s in servers)
            runs = max(3, min(400, int(args.seconds * 1e3 / max(probe, 1e-3))))
            names = [level_name(level) for level in args.busy]
            samples: dict[str, dict[str, list[float]]] = {n: {} for n in names}
            loads: dict[str, list[float]] = {n: [] for n in names}
            waits: list[float] = []
            # --interleave: the levels alternate inside each round; else each level's rounds
            # run back to back
            schedule = ([[(level, r)] for r in range(args.rounds) for level in args.busy]
                        if args.interleave else
                        [[(level, r) for r in range(args.rounds)] for level in args.busy])
            for block in schedule:
                level = block[0][0]
                name = level_name(level)
                if args.gate:  # the host's other tenants quiet before this level's load
                    waits.append(wait_quiet(args.gate))
                with loaded(level, args.period_ms):
                    for _, round_index in block:
                        order = servers if round_index % 2 == 0 else servers[::-1]
                        for server in order:
                            samples[name].setdefault(server.name, [])
                            samples[name][server.name] += server.ask(f"time {runs}")
                    loads[name].append(os.getloadavg()[0])
            levels = {n: level_stats(samples[n], max(loads[n])) for n in names}
            first = levels[names[0]]["engines"]
            for name in names:
                data = levels[name]
                data["slowdown"] = {e: s["p50"] / first[e]["p50"] for e, s in data["engines"].items()}
                print_level(model, name, data)
        finally:
            for server in servers:
                server.close()
    return {"runs_per_round": runs, "levels": levels,
            **({"gate_waits_s": [round(w, 2) for w in waits]} if args.gate else {})}


def runnable() -> int:
    """The host's runnable threads now (Linux /proc/stat; 1 elsewhere: this one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return 1


def wait_quiet(limit: float, settle: float = 0.5) -> float:
    """Waits (at most `limit` seconds) until no thread but this one has been runnable for
    `settle` seconds (sampled every 20 ms); returns the seconds waited (`limit`: never quiet)."""
    start = time.perf_counter()
    quiet_since = None
    while time.perf_counter() - start < limit:
        now = time.perf_counter()
        if runnable() <= 1:
            quiet_since = quiet_since or now
            if now - quiet_since >= settle:
                return now - start
        else:
            quiet_since = None
        time.sleep(0.02)
    return limit


@contextlib.contextmanager
def loaded(level: Level, period_ms: float):  # noqa: ANN201  (a context manager)
    count, duty, period = level
    workers = [multiprocessing.Process(target=busy_loop, args=(duty, period or period_ms),
                                       daemon=True)
               for _ in range(count)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.2 if count else 0.0)  # let the spinners take the cores
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()


def level_stats(samples: dict[str, list[float]], load: float) -> dict[str, Any]:
    stats = {name: summary(times) for name, times in samples.items()}
    reference = next((n for n in stats if n.startswith("ort")), next(iter(stats)))
    return {"loadavg_1min": round(load, 2), "reference": reference, "engines": stats,
            "p50_over_reference": {n: s["p50"] / stats[reference]["p50"] for n, s in stats.items()},
            "p95_over_reference": {n: s["p95"] / stats[reference]["p95"] for n, s in stats.items()}}


def print_level(model: str, level: str, result: dict[str, Any]) -> None:
    for name, stats in result["engines"].items():
        print(f"{model:10s} {level:6s} load {result['loadavg_1min']:4.1f} {name:28s} "
              f"p50 {stats['p50']:9.3f} p95 {stats['p95']:9.3f} ms  "
              f"p50/ref {result['p50_over_reference'][name]:.2f} "
              f"p95/ref {result['p95_over_reference'][name]:.2f} "
              f"slowdown {result.get('slowdown', {}).get(name, 1.0):.2f}", flush=True)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# PyC vs the reference engines under load ({report['threads']} threads)", "",
             f"Command: `{report['command']}`", "",
             "busyN: N busy-loop processes spin during the timings (busy0: none; the shared "
             "host's other tenants are not ours, see the load average). Ratios: engine / "
             "reference (onnxruntime) in the same rounds. `pyc@TREE`: the artifact another "
             "PyC tree builds and runs (the A/B's base). slowdown: the engine's p50 at the level "
             "over its p50 at the first level.", "",
             "| model | load | loadavg | engine | p50 ms | p95 ms | mean ms | p50 / ref | p95 / ref "
             "| slowdown |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for model, result in report["models"].items():
        for level, data in result["levels"].items():
            for name, stats in data["engines"].items():
                lines.append(f"| {model} | {level} | {data['loadavg_1min']:.1f} | {name} | "
                             f"{stats['p50']:.3f} | {stats['p95']:.3f} | {stats['mean']:.3f} | "
                             f"{data['p50_over_reference'][name]:.2f} | "
                             f"{data['p95_over_reference'][name]:.2f} | "
                             f"{data.get('slowdown', {}).get(name, 1.0):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,ppocr_cls,ppocr_det,resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", default="0,1,2",
                        type=lambda text: [parse_level(v) for v in text.split(",")],
                        help="load levels: N busy loops, or N@DUTY (spinning DUTY of each period)")
    parser.add_argument("--period-ms", type=float, default=20.0,
                        help="the period of an N@DUTY load")
    parser.add_argument("--interleave", action="store_true",
                        help="alternate the load levels inside each round")
    parser.add_argument("--gate", type=float, default=0.0, metavar="SECONDS",
                        help="before each level's rounds, wait up to SECONDS until no other "
                             "thread has been runnable for 0.5 s (/proc/stat procs_running)")
    parser.add_argument("--engines", default="pyc,ort")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.4,
                        help="about this long per engine and round (quiet host)")
    parser.add_argument("--out", type=Path, help="writes OUT.json and OUT.md")
    parser.add_argument("--markdown", type=Path, metavar="JSON",
                        help="only rewrite JSON's markdown table (JSON with the suffix .md)")
    args = parser.parse_args(argv)
    if args.markdown:
        args.markdown.with_suffix(".md").write_text(markdown(json.loads(args.markdown.read_text())))
        return 0
    report = {"command": "python benchmarks/under_load.py " + " ".join(argv or sys.argv[1:]),
              "threads": args.threads, "cores": os.cpu_count(), "rounds": args.rounds,
              "period_ms": args.period_ms, "interleave": args.interleave, "gate_s": args.gate,
              "models": {m: measure_model(m, args) for m in args.models.split(",")}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
