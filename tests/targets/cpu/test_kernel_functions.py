"""One function per distinct kernel: calls whose rendered definitions are alike share one
function of model.c, and the model still computes what onnxruntime computes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs

import pyc_cli

FUNCTION = re.compile(r"^static (?:PYC_F16_KERNEL )?int (k\d+_\w+)\((.*?)\) \{\n(.*?)^\}\n",
                      re.S | re.M)


def kernel_functions(source: str) -> dict[str, str]:
    """Kernel function name -> its parameter list and body."""
    return {m.group(1): m.group(2) + m.group(3) for m in FUNCTION.finditer(source)}


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_no_two_kernel_functions_alike_and_outputs_hold(name: str, tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS[name]
    pyc_cli.build(model.path, tmp_path / "a", input_shapes=model.shapes)
    source = (tmp_path / "a" / "src" / "model.c").read_text()
    functions = kernel_functions(source)
    assert functions, "no kernel function found: the pattern is stale"
    assert len(set(functions.values())) == len(functions), "two kernel functions alike"
    called = re.findall(r"status = (k\d+_\w+)\(", source)
    assert set(called) == set(functions), "every kernel is called, and only kernels are"
    if name == "transformer":  # 29 steps: two layers of the same shapes (attention fused)
        assert (len(called), len(functions)) == (29, 14)
    feeds = model.random_feeds(rng)
    expected = onnxruntime_outputs(model.path, feeds)
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
