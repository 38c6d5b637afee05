"""`pyc run --check-contract`: measure each clause of the contract an artifact was built with
(planning/contract.py) on the run just made, and name the decisions behind a broken one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import read_manifest
from ..artifact.source import source_model
from ..errors import PycError
from ..planning.contract import Clause, Contract, broken, parse_contract
from .metrics import compare_value
from .per_node import read_decisions


@dataclass
class ClauseResult:
    clause: Clause
    value: float
    holds: bool
    drove: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"clause": self.clause.text, "name": self.clause.name, "limit": self.clause.limit,
                "value": self.value, "holds": self.holds, "drove": self.drove}

    def line(self) -> str:
        shown = "differing outputs: " + str(int(self.value)) \
            if self.clause.name == "deterministic" else self.clause.show(self.value)
        return f"contract {self.clause.text}: measured {shown}, " \
               f"{'holds' if self.holds else 'BROKEN'}"

    def error(self) -> PycError:
        return broken(self.clause, self.value, "measured", self.drove)


def artifact_contract(artifact: Path) -> Contract:
    """The contract the artifact was built with (PYC-E062 when it has none)."""
    text = read_manifest(artifact)["flags"].get("contract")
    if not isinstance(text, str):
        raise PycError("E062", "the artifact was built without a contract: nothing to check",
                       where=str(artifact), hint="build it with --contract CLAUSES (e.g. "
                       "arena<=16MiB,deterministic,max_rel_err<=1e-4,latency_p95<=8ms)")
    return parse_contract(text, where="manifest.json flags.contract")


def check_run(artifact: Path, model: Any, feeds: dict[str, np.ndarray],
              outputs: dict[str, np.ndarray], latency_ms: dict[str, Any],
              model_path: Path | None = None) -> list[ClauseResult]:
    """Measure every clause: the arena the loaded model holds, a second run's output bytes,
    the error against onnxruntime, the timed runs' percentile."""
    promised = artifact_contract(artifact)
    log = _decisions(artifact)
    results = []
    for clause in promised.clauses:
        if clause.name == "arena":
            value, drove = float(model.arena_bytes), _policy(log)
        elif clause.name == "deterministic":
            again = model.run(feeds)
            differ = [n for n in outputs if outputs[n].tobytes() != again[n].tobytes()]
            value, drove = float(len(differ)), [f"output {n} changed between two runs"
                                                for n in differ] + _policy(log)
        elif clause.name == "max_rel_err":
            value, drove = _relative_error(artifact, feeds, outputs, model_path)
            drove += _precision_decisions(log)
        else:
            value = float(latency_ms[f"p{clause.percentile}"]) / 1e3
            drove = [f"over {latency_ms['runs']} timed runs"] + _policy(log) + _kernels(log)
        holds = value == 0 if clause.name == "deterministic" else clause.holds(value)
        results.append(ClauseResult(clause, value, holds, drove))
    return results


def _relative_error(artifact: Path, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    model_path: Path | None) -> tuple[float, list[str]]:
    """max |output - reference| / max |reference| over the float outputs (the infinity-norm
    relative error), against onnxruntime on the source model."""
    from .reference import run_reference

    reference = run_reference(source_model(artifact, read_manifest(artifact), model_path), feeds)
    errors = {}
    for name, got in outputs.items():
        want = np.asarray(reference[name])
        if not np.issubdtype(want.dtype, np.floating) or want.size == 0:
            continue
        scale = float(np.max(np.abs(want.astype(np.float64)))) or 1.0
        errors[name] = compare_value(name, np.asarray(got), want).max_abs_error / scale
    if not errors:
        return 0.0, ["no floating output"]
    worst = max(errors, key=lambda n: errors[n])
    return errors[worst], [f"output {worst} (max |error| / max |reference| against onnxruntime)"]


def _decisions(artifact: Path) -> list[dict[str, Any]]:
    # a slim artifact has no decision log: fewer decisions named
    return read_decisions(artifact) if (artifact / "decisions.jsonl").is_file() else []


def _policy(log: list[dict[str, Any]]) -> list[str]:
    return [f"policy {d['after']}" for d in log if d.get("action") == "policy"][:1]


def _kernels(log: list[dict[str, Any]]) -> list[str]:
    """The kernels chosen, the most used first."""
    counts: dict[str, int] = {}
    for d in log:
        if d.get("action") == "select_kernel":
            counts[str(d.get("after"))] = counts.get(str(d.get("after")), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
    return [f"kernel {name} on {count} node(s)" for name, count in ranked]


def _precision_decisions(log: list[dict[str, Any]]) -> list[str]:
    """Decisions that trade accuracy: a reduced precision, Winograd convolutions."""
    found = [f"precision: {d['reason']}" for d in log if d.get("action") == "precision"]
    found += [f"kernel {d['after']} on node {d['nodes'][0]}" for d in log
              if d.get("action") == "select_kernel" and "winograd" in str(d.get("after"))]
    return found
