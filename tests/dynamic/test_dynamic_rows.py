"""Issue #15: row kernels (Softmax, LayerNormalization) over a symbolic row count and
elementwise loops broadcasting over symbolic leading dims, in a small encoder-like block with a
dynamic batch, against onnxruntime at many batches (the large ones split into tasks whose count
is computed at run time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import onnxruntime_outputs

import pyc_cli
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.models import encoder_block

RTOL, ATOL = 1e-4, 1e-5


def test_encoder_block_runs_every_batch(tmp_path: Path) -> None:
    model_path = encoder_block(tmp_path)
    shapes, _ = parse_input_shapes(["x=batch:1..512,16,64"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes).artifact
    kernels = {json.loads(line)["after"] for line in (art / "decisions.jsonl").read_text()
               .splitlines() if json.loads(line)["action"] == "select_kernel"}
    assert kernels == {"elementwise_loop_dims", "matmul_packed_const_rows", "softmax_rows_dims",
                       "layernorm_rows_dims"}
    source = (art / "src" / "model.c").read_text()
    assert "task < (((1024*dims[0]) + 16383) / 16384)" in source  # run-time task counts
    rng = np.random.default_rng(21)
    with pyc_cli.load(art) as model:
        for batch in (1, 3, 200, 511, 512):
            x = rng.standard_normal((batch, 16, 64)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert y.shape == (batch, 16, 64)
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL)
