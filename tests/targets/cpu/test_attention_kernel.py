"""The fused attention kernel (attention_rows) against numpy float64, on odd sizes: one query
row, one key, prime lengths, a row count that leaves a partial block of query rows, keys long
enough to shrink the block, with and without a scale and an additive mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from ops.test_references import attention_feeds, attention_model

import pyc_cli

SHAPES = [  # batch, S (query rows), D (query/key width), T (keys), E (value width), scale, mask
    ((1,), 1, 1, 1, 1, None, False),
    ((2, 3), 17, 7, 130, 19, 0.25, True),
    ((1, 12), 128, 32, 128, 32, 0.1767767, True),  # MiniLM-L6's heads at sequence 128
    ((3,), 33, 5, 3, 16, None, True),
    ((2,), 5, 64, 17, 1, 0.5, False),
    ((1,), 20, 8, 1000, 9, 0.125, True),  # 8 query rows per block (their scores fit 32 KiB)
]


def attention_weights(q: np.ndarray, kt: np.ndarray, feeds: dict[str, np.ndarray],
                      scale: float | None) -> np.ndarray:
    """exp(scores - row max) in float64, scores = q @ kt, scaled (the float32 scale) and
    masked (feeds["mask"], where given)."""
    scores = q @ kt
    if scale is not None:
        scores = scores * np.float64(np.float32(scale))
    if "mask" in feeds:
        scores = scores + feeds["mask"].astype(np.float64)
    return np.exp(scores - scores.max(axis=-1, keepdims=True))


def float64_attention(feeds: dict[str, np.ndarray], scale: float | None) -> np.ndarray:
    q, kt, v = (feeds[n].astype(np.float64) for n in ("q", "kt", "v"))
    weights = attention_weights(q, kt, feeds, scale)
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", SHAPES)
def test_attention_kernel_matches_float64(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                                          scale: float | None, mask: bool,
                                          rng: np.random.Generator, tmp_path: Path) -> None:
    model = attention_model(batch, s, d, t, e, scale, mask)
    path = tmp_path / "attention.onnx"
    onnx.save(model, path)
    result = pyc_cli.build(path, tmp_path / "art")
    assert [n.op for n in result.graph.nodes] == ["pyc.Attention"]
    assert result.graph.nodes[0].ann.kernel_name == "attention_rows"
    feeds = attention_feeds(model, rng)
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run(feeds)["y"]
    # float32 sums of D products and of T weighted values, against exact float64
    np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)


def test_the_score_matrix_takes_no_arena_space(tmp_path: Path) -> None:
    """Fused, the [.., S, T] scores never exist: only the output needs memory (the inputs and
    the output are the caller's), so the arena is empty."""
    path = tmp_path / "attention.onnx"
    onnx.save(attention_model((1, 12), 128, 32, 128, 32, 0.18, True), path)
    assert pyc_cli.build(path, tmp_path / "art").plan.arena_bytes == 0
