"""A fuzz campaign: generate, check, classify, save (and shrink) failures, write the JSON report.

    python -m pyc_cli.testing.fuzz --seconds 600 --seed 1 --out benchmarks/results/fuzz.json
    python -m pyc_cli.testing.fuzz --replay benchmarks/results/fuzz-failures/<id>
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .generate import FuzzCase, GenerationFailed, generate
from .known import known_defect
from .runner import CLASSES, FAILING, MODES, CaseResult, Outcome, Runner

SPECIAL_SHARE = 0.3  # of the graphs also get a special-values feed
SHRINK_SECONDS = 60.0  # per new failure


def graph_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def wants_special(gseed: int) -> bool:
    return bool(np.random.default_rng([gseed, 99]).random() < SPECIAL_SHARE)


@dataclass
class Failure:
    gseed: int
    outcome: Outcome
    modes: list[str]
    ops: list[str]
    known: str = ""
    directory: str = ""
    shrunk_nodes: int | None = None
    shrunk_detail: str = ""
    only: tuple[str, ...] = ()  # the --ops the campaign was restricted to (replay needs them)

    @property
    def ident(self) -> str:
        return f"{self.gseed}-{self.outcome.cls}-{self.outcome.feed}"

    def replay(self) -> str:
        ops = f" --ops {','.join(self.only)}" if self.only else ""
        return f"python -m pyc_cli.testing.fuzz --graph-seed {self.gseed}{ops}" + (
            f"  # or --replay {self.directory}" if self.directory else "")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ident, "graph_seed": self.gseed, "class": self.outcome.cls,
                "feed": self.outcome.feed, "code": self.outcome.code, "modes": self.modes,
                "ops": sorted(set(self.ops)), "nodes": len(self.ops), "known_defect": self.known,
                "detail": self.outcome.detail[:1200], "dir": self.directory,
                "shrunk_nodes": self.shrunk_nodes, "shrunk_detail": self.shrunk_detail[:1200],
                "replay": self.replay(),
                "replay_small": self.replay_small(),
                "reduce": self.reduce_command()}

    def replay_small(self) -> str:
        if self.shrunk_nodes is None:
            return ""
        special = " --special-values" if self.outcome.feed == "special" else ""
        return (f"python -m pyc_cli.testing.fuzz --replay {self.directory}/small.onnx "
                f"--seed {self.gseed}{special}")

    def reduce_command(self) -> str:
        if not self.directory or not reduce_condition(self.outcome):
            return ""
        extra = f" --seed {self.gseed}" + (" --special-values" if self.outcome.feed == "special" else "")
        return (f"pyc reduce {self.directory}/model.onnx --until {reduce_condition(self.outcome)}"
                f"{extra} -o small.onnx")


def reduce_condition(outcome: Outcome) -> str:
    if outcome.cls == "refused" or (outcome.cls == "crash" and outcome.code):
        return outcome.code
    return outcome.cls if outcome.cls in ("mismatch", "crash", "hang") else ""  # no ort_defect


def _by_feed() -> dict[str, Counter]:
    return {"normal": Counter(), "special": Counter()}


@dataclass
class Stats:
    graphs: int = 0
    builds: int = 0
    generation_failures: int = 0
    counts: dict[str, Counter] = field(default_factory=lambda: _by_feed())
    refused_codes: dict[str, Counter] = field(default_factory=lambda: _by_feed())
    ops: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    ort_defects: list[dict[str, Any]] = field(default_factory=list)
    suspicious_refusals: list[dict[str, Any]] = field(default_factory=list)

    def add(self, case: FuzzCase, result: CaseResult) -> None:
        self.graphs += 1
        self.ops.update(case.ops)
        for outcome in result.outcomes:
            self.counts[outcome.feed][outcome.cls] += 1
            if outcome.feed == "normal":
                self.builds += 1
            if outcome.cls == "refused":
                self.refused_codes[outcome.feed][outcome.code] += 1

    def record(self, case: FuzzCase, result: CaseResult, failures: list[Failure]) -> None:
        """Count the case and file its failures (onnxruntime's defects and E009 refusals apart)."""
        self.add(case, result)
        for failure in failures:
            if failure.outcome.cls == "ort_defect":
                self.ort_defects.append(failure.to_json())
            elif failure.outcome.cls == "refused":
                self.suspicious_refusals.append(failure.to_json())
            else:
                self.failures.append(failure)

    def sort(self) -> None:
        """Report order independent of which parallel worker finished first."""
        self.failures.sort(key=lambda f: f.ident)
        self.ort_defects.sort(key=lambda f: f["id"])
        self.suspicious_refusals.sort(key=lambda f: f["id"])

    def counts_json(self, feed: str) -> dict[str, Any]:
        counts: dict[str, Any] = {cls: self.counts[feed][cls] for cls in CLASSES}
        counts["refused"] = {"total": self.counts[feed]["refused"],
                             **dict(sorted(self.refused_codes[feed].items()))}
        return counts


def is_suspicious_refusal(outcome: Outcome) -> bool:
    """PYC-E009 says the model is inconsistent, but onnx.checker (strict) and onnxruntime
    accepted every generated graph: such a refusal is reported (not counted as a failure)."""
    return outcome.cls == "refused" and outcome.code == "E009" and outcome.feed == "normal"


def failures_of(case: FuzzCase, result: CaseResult) -> list[Failure]:
    """One failure per (class, feed) of a graph, listing the modes it happened in."""
    grouped: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in result.outcomes:
        if outcome.cls in FAILING or outcome.cls == "ort_defect" or is_suspicious_refusal(outcome):
            grouped.setdefault((outcome.cls, outcome.feed), []).append(outcome)
    return [Failure(case.seed, found[0], [o.mode for o in found], case.ops,
                    known_defect(found[0], case.model)) for found in grouped.values()]


def save_failure(failure: Failure, case: FuzzCase, root: Path, shrink: bool) -> None:
    directory = root / failure.ident
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(case.model, str(directory / "model.onnx"))
    failure.directory = str(directory)
    # known defects are already understood; a hang would cost a timeout per candidate
    if shrink and failure.outcome.cls in ("mismatch", "crash", "ort_defect", "refused") and not failure.known:
        shrink_failure(failure, case, directory)
    (directory / "case.json").write_text(json.dumps(failure.to_json(), indent=2, sort_keys=True))


def shrink_failure(failure: Failure, case: FuzzCase, directory: Path) -> None:
    """Save small.onnx beside the model (a flaky failure that does not reproduce is left as is)."""
    from ...errors import PycError
    from ..reduce import condition_for_outcome, reduce_model

    condition = condition_for_outcome(failure.outcome, case.seed)
    try:
        small, _ = reduce_model(case.model, condition, time_budget=SHRINK_SECONDS)
    except PycError:
        return
    onnx.save(small, str(directory / "small.onnx"))
    failure.shrunk_nodes = len(small.graph.node)
    shrunk = getattr(condition, "last_held", None)
    if isinstance(shrunk, Outcome):
        # the small repro shows the defect alone (e.g. only NaN positions): label it by that
        failure.shrunk_detail = shrunk.detail
        failure.known = known_defect(shrunk, small)


def check_case(runner: Runner, case: FuzzCase) -> CaseResult:
    return runner.check(case.model, case.seed, wants_special(case.seed))


def run_campaign(seconds: float, seed: int, failures_dir: Path | None, shrink: bool = True,
                 max_graphs: int | None = None, only: list[str] | None = None,
                 modes: tuple[str, ...] = MODES, progress: bool = True,
                 jobs: int = 1) -> tuple[Stats, float]:
    """Check graphs `graph_seed(seed, 0), (seed, 1), ...` until the time or graph budget is
    spent. With `jobs` > 1, that many workers build in parallel (one child process each); the
    graphs are the same ones, only the order they finish in differs."""
    stats = Stats()
    start = time.monotonic()
    indices = itertools.count()
    lock = threading.Lock()

    def next_index() -> int | None:
        with lock:
            index = next(indices)
        if time.monotonic() - start >= seconds or (max_graphs is not None and index >= max_graphs):
            return None
        return index

    def work() -> None:
        with Runner(modes) as runner:
            while (index := next_index()) is not None:
                gseed = graph_seed(seed, index)
                try:
                    case = generate(gseed, only)
                except GenerationFailed:
                    with lock:
                        stats.generation_failures += 1
                    continue
                result = check_case(runner, case)
                failures = failures_of(case, result)
                for failure in failures:
                    failure.only = tuple(only or ())
                    if failures_dir is not None:
                        save_failure(failure, case, failures_dir, shrink)
                with lock:
                    stats.record(case, result, failures)
                    if progress:
                        _progress(stats, time.monotonic() - start)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.sort()
    if progress:
        sys.stderr.write("\n")
    return stats, time.monotonic() - start


def _progress(stats: Stats, elapsed: float) -> None:
    normal = stats.counts["normal"]
    line = (f"\r{elapsed:6.0f}s graphs {stats.graphs} builds {stats.builds} | " +
            " ".join(f"{cls} {normal[cls]}" for cls in CLASSES if normal[cls]) +
            " | special: " + " ".join(f"{c} {n}" for c, n in sorted(stats.counts['special'].items())))
    sys.stderr.write(line[:200])
    sys.stderr.flush()


def report(stats: Stats, duration: float, command: str, seed: int, seconds: float,
           jobs: int = 1) -> dict[str, Any]:
    from .specs import fuzzable_ops

    return {
        "command": command, "seed": seed, "seconds_requested": seconds, "jobs": jobs,
        "commit": _commit(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "duration_s": round(duration, 1), "graphs": stats.graphs, "builds": stats.builds,
        "graphs_per_hour": round(stats.graphs * 3600 / max(duration, 1e-9)),
        "generation_failures": stats.generation_failures,
        "counts": stats.counts_json("normal"),
        "special_values": stats.counts_json("special"),
        "failures_by_defect": dict(Counter(f.known or "NEW" for f in stats.failures).most_common()),
        "failures": [f.to_json() for f in stats.failures],
        "ort_defects": stats.ort_defects,
        "suspicious_refusals": stats.suspicious_refusals,
        "op_histogram": dict(stats.ops.most_common()),
        "ops_not_covered": sorted(set(fuzzable_ops()) - set(stats.ops)),
    }


def _commit() -> str:
    """The checkout's commit (with "+changes" when the tree differs), "" outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+changes" if dirty else "")
