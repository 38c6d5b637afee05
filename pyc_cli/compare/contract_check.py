"""`pyc run --check-contract`: measure each clause of the contract an artifact was built with
(planning/contract.py) on the run just made, and name the decisions behind a broken one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import read_manifest
from ..artifact.source import source_model
from ..errors import PycError
from ..ir.types import is_float_numpy
from ..planning.contract import Clause, Contract, broken, parse_contract
from .metrics import compare_value
from .per_node import read_decisions


@dataclass
class ClauseResult:
    clause: Clause
    value: float
    holds: bool
    drove: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # beside the value, for information

    def to_json(self) -> dict[str, Any]:
        return {"clause": self.clause.text, "name": self.clause.name, "limit": self.clause.limit,
                "value": self.value, "holds": self.holds, "drove": self.drove, **self.extra}

    def line(self) -> str:
        shown = "differing outputs: " + str(int(self.value)) \
            if self.clause.name == "deterministic" else self.clause.show(self.value)
        against = f" against the {self.extra['float64_reference']}" \
            if "onnxruntime_fp32" in self.extra and \
            not str(self.extra.get("float64_reference")).startswith("unavailable") else ""
        beside = f" (onnxruntime float32: {self.extra['onnxruntime_fp32']:.3g})" \
            if "onnxruntime_fp32" in self.extra else ""
        return f"contract {self.clause.text}: measured {shown}{against}{beside}, " \
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
    the error against a float64 reference (onnxruntime's float32 beside it), the timed runs'
    percentile."""
    promised = artifact_contract(artifact)
    log = _decisions(artifact)
    results = []
    for clause in promised.clauses:
        extra: dict[str, Any] = {}
        if clause.name == "arena":
            value, drove = float(model.arena_bytes), _policy(log)
        elif clause.name == "deterministic":
            again = model.run(feeds)
            differ = [n for n in outputs if outputs[n].tobytes() != again[n].tobytes()]
            value, drove = float(len(differ)), [f"output {n} changed between two runs"
                                                for n in differ] + _policy(log)
        elif clause.name == "max_rel_err":
            value, drove, extra = _relative_error(artifact, feeds, outputs, model_path)
            drove += _precision_decisions(log)
        else:
            value = float(latency_ms[f"p{clause.percentile}"]) / 1e3
            drove = [f"over {latency_ms['runs']} timed runs"] + _policy(log) + _kernels(log)
        holds = value == 0 if clause.name == "deterministic" else clause.holds(value)
        results.append(ClauseResult(clause, value, holds, drove, extra))
    return results


def _relative_error(artifact: Path, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    model_path: Path | None) -> tuple[float, list[str], dict[str, Any]]:
    """max |output - reference| / max |reference| over the float outputs (the infinity-norm
    relative error) against the true value: the source model evaluated in float64
    (compare/reference64.py). The error against onnxruntime in float32 comes beside it, for
    information; it is the clause's value only where no float64 reference can run the model."""
    from .reference import run_reference
    from .reference64 import run_float64

    source = source_model(artifact, read_manifest(artifact), model_path)
    fp32 = _norm_errors(outputs, run_reference(source, feeds))
    extra: dict[str, Any] = {"onnxruntime_fp32": max(fp32.values()) if fp32 else 0.0}
    try:
        wide, computed_by = run_float64(source, feeds)
    except PycError as exc:  # no float64 evaluation of this model: onnxruntime's float32
        extra["float64_reference"] = f"unavailable ({exc.hint})"
        value, drove = _worst(fp32, "onnxruntime in float32: no float64 reference ran the model")
        return value, drove, extra
    extra["float64_reference"] = computed_by
    value, drove = _worst(_norm_errors(outputs, wide), f"float64 reference: {computed_by}")
    return value, drove + [f"against onnxruntime in float32: {extra['onnxruntime_fp32']:.3g}"], \
        extra


def _norm_errors(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]
                 ) -> dict[str, float]:
    errors = {}
    for name, got in outputs.items():
        want = np.asarray(reference[name])
        if not is_float_numpy(want.dtype) or want.size == 0:
            continue
        wide = want.astype(np.float64)
        scale = float(np.max(np.abs(wide))) or 1.0
        errors[name] = compare_value(name, np.asarray(got).astype(np.float64),
                                     wide).max_abs_error / scale
    return errors


def _worst(errors: dict[str, float], against: str) -> tuple[float, list[str]]:
    if not errors:
        return 0.0, ["no floating output"]
    worst = max(errors, key=lambda n: errors[n])
    return errors[worst], [f"output {worst} (max |error| / max |reference| against {against})"]


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
