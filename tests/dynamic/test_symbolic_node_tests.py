"""ONNX node tests built with their free input dims symbolic (tests/symbolic_sweep.py's
free_dims: a named dim per size, bounds 1..2 x size) and run on the CPU target at the cases'
own shapes against their stored outputs (symbolic_sweep.run_case: conformance.compare, the
case's rtol / atol, integers exactly), outputs poisoned before the run. The cases are those the CUDA symbolic
sweep (`cuda_sweep.py --symbolic`) found giving the upper bounds' results on both targets:
Size of a symbolic tensor folded to its bounds' count, Shape returned as a graph output (no
kernel), EyeLike folded to a constant of the bounds' shape, and Resize's align_corners read
through the rounded output size instead of the input size x scale; and the CPU symbolic run
sweep (`symbolic_sweep.py --run`): pools over symbolic channels, windows (a global pool) or
"SAME" pads wrote those dims' names into C (PYC-E020)."""

from __future__ import annotations

import conformance
import pytest
from symbolic_sweep import run_case

from tests.dynamic.checks import poison_outputs

CASES = {
    "Size": ["test_size", "test_size_example"],
    "Shape": ["test_shape", "test_shape_start_1_end_2"],
    "EyeLike": ["test_eyelike_without_dtype", "test_eyelike_with_dtype",
                "test_eyelike_populate_off_main_diagonal"],
    "Resize": ["test_resize_downsample_scales_linear_align_corners",
               "test_resize_downsample_scales_cubic_align_corners",
               "test_resize_upsample_scales_linear_align_corners"],
    "MaxPool": ["test_maxpool_2d_pads", "test_maxpool_2d_precomputed_same_upper"],
    "AveragePool": ["test_averagepool_2d_pads_count_include_pad", "test_averagepool_2d_same_lower"],
    "GlobalMaxPool": ["test_globalmaxpool"],
}


def _cases() -> list[conformance.Case]:
    wanted = {name for names in CASES.values() for name in names}
    return sorted((c for c in conformance.collect_cases(sorted(CASES)) if c.name in wanted),
                  key=lambda c: c.name)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c.name)
def test_symbolic_build_matches_the_stored_outputs(case: conformance.Case,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """symbolic_sweep.run_case in this process: every data set, at least one dim symbolic
    (else `skipped`), outputs poisoned."""
    poison_outputs(monkeypatch)
    result = run_case(case)
    assert result.outcome == "pass", result.detail
