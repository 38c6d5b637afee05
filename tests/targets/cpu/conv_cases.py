"""Convolution graphs for the CPU conv kernel tests (implicit GEMM, strided, Winograd): several
convs side by side in one ONNX graph, each with its own random input and weights and an optional
fused epilogue, their float64 numpy references, and for each output the magnitude sum
|x| * |w| over its window, from which a test states its tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import make_model
from onnx import TensorProto, helper, numpy_helper
from test_gemm import ATOL, RTOL

import pyc_cli

# a conv: (x shape, w shape, strides, pads (begins..., ends...), dilations, group, epilogue);
# epilogues: "" (none), "bias_relu", "residual" (an input of the output's shape) or "per_row"
# (a residual broadcast along the output width)
Conv = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...],
             int, str]


def conv_reference(x: np.ndarray, w: np.ndarray, strides: tuple[int, ...],
                   pads: tuple[int, ...], dilations: tuple[int, ...], group: int) -> np.ndarray:
    """Direct float64 convolution, 1-D or 2-D (a 1-D one as 2-D of height 1)."""
    if x.ndim == 3:
        out = conv_reference(x[:, :, None], w[:, :, None], (1, strides[0]),
                             (0, pads[0], 0, pads[1]), (1, dilations[0]), group)
        return out[:, :, 0]
    _, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    oc, cg = w.shape[:2]
    out = np.zeros((x.shape[0], oc, oh, ow))
    for o in range(oc):
        g = o // (oc // group)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                           j * dw:j * dw + (ow - 1) * sw + 1:sw]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


@dataclass
class ConvGraph:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]  # float64, epilogue applied
    magnitudes: dict[str, np.ndarray]  # the conv's sum of |x| * |w| per output element
    convs: dict[str, np.ndarray]  # the conv's own float64 result (before its epilogue)
    terms: dict[str, int]  # products summed per output element

    def summation_bounds(self, dtype: type) -> dict[str, np.ndarray]:
        """Per output, the worst rounding error of summing its terms in `dtype`, in any order."""
        unit = 2.0 ** -24 if dtype == np.float32 else 2.0 ** -53
        return {name: (self.terms[name] + 2) * unit * (self.magnitudes[name]
                                                        + np.abs(self.convs[name]))
                for name in self.expected}


def conv_graph(rng: np.random.Generator, convs: list[Conv], dtype: type = np.float32,
               name: str = "convs") -> ConvGraph:
    """`convs` in one graph (outputs y0, y1, ...), with fresh random inputs and weights."""
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inputs, outputs, inits = [], [], [], []
    graph = ConvGraph(onnx.ModelProto(), {}, {}, {}, {}, {})
    for n, (xs, ws, strides, pads, dilations, group, epilogue) in enumerate(convs):
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        graph.feeds[f"x{n}"] = x
        inputs.append(helper.make_tensor_value_info(f"x{n}", elem, list(xs)))
        inits.append(numpy_helper.from_array(w, f"w{n}"))
        geometry = (strides, pads, dilations, group)
        want = conv_reference(x.astype(np.float64), w.astype(np.float64), *geometry)
        out = f"y{n}"
        graph.convs[out], graph.terms[out] = want, int(np.prod(ws[1:]))
        graph.magnitudes[out] = conv_reference(np.abs(x.astype(np.float64)),
                                               np.abs(w.astype(np.float64)), *geometry)
        nodes.append(helper.make_node("Conv", [f"x{n}", f"w{n}"], [out if not epilogue else f"t{n}"],
                                      strides=list(strides), pads=list(pads),
                                      dilations=list(dilations), group=group))
        if epilogue == "bias_relu":
            bias = rng.standard_normal((ws[0],) + (1,) * (len(xs) - 2)).astype(dtype)
            inits.append(numpy_helper.from_array(bias, f"bias{n}"))
            nodes += [helper.make_node("Add", [f"t{n}", f"bias{n}"], [f"u{n}"]),
                      helper.make_node("Relu", [f"u{n}"], [out])]
            want = np.maximum(want + bias.astype(np.float64), 0)
        elif epilogue in ("residual", "per_row"):
            shape = want.shape if epilogue == "residual" else want.shape[:-1] + (1,)
            residual = rng.standard_normal(shape).astype(dtype)
            graph.feeds[f"r{n}"] = residual
            inputs.append(helper.make_tensor_value_info(f"r{n}", elem, list(shape)))
            nodes.append(helper.make_node("Add", [f"t{n}", f"r{n}"], [out]))
            want = want + residual
        outputs.append(helper.make_tensor_value_info(out, elem, list(want.shape)))
        graph.expected[out] = want
    graph.model = make_model(nodes, inputs, outputs, inits, name=name)
    return graph


def assert_within_bounds(got: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                         bounds: dict[str, np.ndarray], dtype: type) -> None:
    """Every output within RTOL / ATOL (float64: 1e-12) plus its summation bound."""
    rtol, atol = (RTOL, ATOL) if dtype == np.float32 else (1e-12, 1e-12)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        excess = np.abs(got[name] - want) - (rtol * np.abs(want) + atol + bounds[name])
        assert np.all(excess <= 0), (name, float(excess.max()))


def same_bits_at_every_team_size(artifact: Path, feeds: dict[str, np.ndarray],
                                 monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """The artifact's outputs at 1, 2 and 3 threads (PYC_NUM_THREADS, read when the model is
    created), asserted bit-identical; the 2-thread ones are returned."""
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("PYC_NUM_THREADS", threads)
        with pyc_cli.load(artifact) as compiled:
            results[threads] = compiled.run(feeds)
    for name, value in results["1"].items():
        for threads in ("2", "3"):
            np.testing.assert_array_equal(results[threads][name], value, f"{name}, {threads} threads")
    return results["2"]
