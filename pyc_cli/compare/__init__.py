"""`pyc run --compare ort [--per-node]`: the compiled model against onnxruntime on the source model.

`metrics` judges one value against the reference, `reference` runs onnxruntime, `reference64`
the model in float64, runtime/debug_build builds the artifact's kernels with a tapping entry
point, `per_node` maps compiled values back to ONNX values, `report` prints and serializes the
result.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.reader import EXPLAIN_FILES, read_manifest, require_files, verify_files
from ..artifact.source import source_model
from ..errors import PycError
from .metrics import ValueComparison, compare_value
from .per_node import PerNodeReport, per_node_report
from .reference import reference_name, run_reference

REFERENCES = ("ort",)


@dataclass(frozen=True)
class CompareOptions:
    reference: str = "ort"
    per_node: bool = False
    model: Path | None = None  # the source model when the artifact holds no copy
    rtol: float | None = None  # None: the per-dtype default
    atol: float | None = None


@dataclass
class CompareReport:
    reference: str
    model: str
    outputs: list[ValueComparison]
    per_node: PerNodeReport | None = None

    @property
    def passed(self) -> bool:
        """Whether every model output is within tolerance (intermediates only explain)."""
        return all(o.passed for o in self.outputs)

    def failing(self) -> list[str]:
        return [o.name for o in self.outputs if not o.passed]

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "model": self.model, "passed": self.passed,
                "outputs": [o.to_json() for o in self.outputs],
                "per_node": None if self.per_node is None else self.per_node.to_json()}


def compare_run(artifact: Path, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                options: CompareOptions) -> CompareReport:
    """Compare the artifact's `outputs` for `feeds` with onnxruntime's on the source model
    (and, with per_node, every intermediate that still exists after fusion)."""
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)  # the kept source, model.ir, plan and src/ are read below
    model_path = source_model(artifact, manifest, options.model)
    name = reference_name()  # fails early (PYC-E044) when onnxruntime is missing
    per_node = None
    if options.per_node and manifest["target"] != "cpu":
        raise PycError("E050", f"--per-node compares a CPU debug build; this artifact's target is "
                       f"{manifest['target']}", where=str(artifact),
                       hint="compare the outputs with --compare ort alone, or build the model with "
                       "--target cpu and compare that per node")
    if options.per_node:
        require_files(artifact, manifest, [*EXPLAIN_FILES[:3], "src/model.c", "src/model.h",
                                           "src/pyc_runtime.c", "src/pyc_runtime.h"], "--per-node")
        with tempfile.TemporaryDirectory(prefix="pyc-debug-") as work:
            per_node, reference = per_node_report(artifact, manifest, model_path, feeds, outputs,
                                                  Path(work), options.rtol, options.atol)
    else:
        reference = run_reference(model_path, feeds)
    compared = [compare_value(out, outputs[out], reference[out], options.rtol, options.atol)
                for out in outputs]
    return CompareReport(name, str(model_path), compared, per_node)
