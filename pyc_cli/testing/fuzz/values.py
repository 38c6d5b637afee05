"""Feeds for a model: normal values, or the "special values" class (NaN, ±Inf, -0.0, denormals,
huge numbers mixed into float inputs), reported separately from normal feeds.

Integer inputs draw from the range the generator stored in the model's metadata (valid indices,
including negative ones) and skip zero where the input is a divisor; other tools (pyc reduce)
read the same metadata, so a shrunk model is fed the same way. A model without that metadata (a
user's model given to `pyc reduce`) gets the ranges its graph implies, by the analysis `pyc run
--random-inputs` uses (token_type_ids into a 2-row table: 0 or 1).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

# the generator stores each integer input's valid range and the divisors in the model's metadata
RANGES_KEY = "pyc.fuzz.input_ranges"
NONZERO_KEY = "pyc.fuzz.nonzero_inputs"
DEFAULT_INT_RANGE = (-8, 8)
SPECIAL_SHARE = 0.25  # of the elements of each float input, in a special-values feed


def special_pool(dtype: np.dtype) -> np.ndarray:
    info = np.finfo(dtype)
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, info.smallest_subnormal,
                     -info.smallest_subnormal, info.tiny / 2, info.max, -info.max, info.max / 3],
                    dtype=dtype)


def input_constraints(model: onnx.ModelProto) -> tuple[dict[str, list[int]], set[str]]:
    props = {p.key: p.value for p in model.metadata_props}
    ranges = json.loads(props[RANGES_KEY]) if RANGES_KEY in props else ranges_from_uses(model)
    nonzero = set(json.loads(props.get(NONZERO_KEY, "[]")))
    return ranges, nonzero


def ranges_from_uses(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Inclusive [low, high] of each integer input that indexes a table or is a mask; {} when
    PyC cannot import the model (the default range then applies)."""
    from ...frontend.onnx_import import convert
    from ...input_ranges import DEFAULT_RANGE, input_ranges
    from ...ops.propagate import propagate_types

    try:
        graph = convert(model, {}, check_ops=False)
        graph.types = propagate_types(graph)
        found = input_ranges(graph)
    except Exception:  # noqa: BLE001  (any import failure: nothing known about the inputs)
        return {}
    return {name: [r.low, r.high - 1] for name, r in found.items()
            if r.uses or (r.low, r.high) != DEFAULT_RANGE}


def feeds_for(model: onnx.ModelProto, seed: int, special: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ranges, nonzero = input_constraints(model)
    init_names = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in init_names:
            continue
        tensor = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape = tuple(max(d.dim_value, 0) if d.HasField("dim_value") else 1 for d in tensor.shape.dim)
        feeds[value.name] = array_for(rng, dtype, shape, ranges.get(value.name),
                                      value.name in nonzero, special)
    return feeds


def array_for(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...],
              int_range: list[int] | None, nonzero: bool, special: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.floating):
        array = rng.standard_normal(shape).astype(dtype)
        if nonzero:
            array = np.where(np.abs(array) < 0.1, np.asarray(0.5, dtype), array)
        if special and array.size:
            mask = rng.random(shape) < SPECIAL_SHARE
            array = np.where(mask, rng.choice(special_pool(dtype), shape), array).astype(dtype)
        return array
    lo, hi = int_range or DEFAULT_INT_RANGE
    if np.issubdtype(dtype, np.unsignedinteger):
        lo = max(lo, 0)
    array = rng.integers(lo, hi + 1, shape)
    if nonzero:
        array = np.where(array == 0, 1, array)
    return array.astype(dtype)
