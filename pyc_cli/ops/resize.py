"""Resize (opset 10+) and Upsample (7-9): nearest, (multi)linear and cubic, every coordinate
mode (incl. tf_crop_and_resize with extrapolation), antialiased downsampling, exclude_outside
and the keep_aspect_ratio policies.

Resize is separable: along each axis every output coordinate reads a few source indices
(`taps`: 1 nearest, 2 linear, 4 cubic, more when antialiasing stretches the filter) with
weights that depend only on static shapes, so they are computed here once, as the ONNX
reference defines them, and emitted as constant tables; the kernel just gathers and blends.
Where they cannot be (symbolic dims; scales or sizes computed at run time from input values,
issue #15 point 2: `runtime_infer` gives such output lengths computed dims bounded by the
declared values), the CPU target's run-time kernel computes the coordinates and taps at run time
(`runtime_params`).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, DimLike, SymbolicError, computed_dim, floor_div, has_dims
from ..ir.types import DType, TensorType, check_int32_index
from . import references
from .intervals import Interval
from .movement import contiguous_strides
from .registry import (
    KERNEL,
    VALUES_HINT,
    InRanges,
    InTypes,
    InValues,
    OpDef,
    Scalar,
    as_dim,
    ints_attr,
    normalize_axis,
    register,
    require,
)

_COORDINATE_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                     "tf_half_pixel_for_nn", "half_pixel_symmetric", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_POLICIES = ("stretch", "not_larger", "not_smaller")


class ResizeBase(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    # ------------------------------------------------------------ attributes and sizes

    def mode(self, node: Node) -> str:
        mode = str(node.attrs.get("mode", "nearest"))
        if mode == "bilinear":  # Upsample-7 spelling
            mode = "linear"
        if mode not in ("nearest", "linear", "cubic"):
            raise PycError("E008", f"{node.op} mode {mode!r} is not supported (nearest, linear, "
                           "cubic are)", where=node.name)
        return mode

    def coordinate_mode(self, node: Node) -> str:
        if node.op == "Upsample" or self.since_opset(node) < 11:
            return "asymmetric"
        mode = str(node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        if mode not in _COORDINATE_MODES:
            raise PycError("E008", f"coordinate_transformation_mode {mode!r} is not supported",
                           where=node.name)
        return mode

    def since_opset(self, node: Node) -> int:
        return node.int_attr("_opset", 11)

    def check_supported(self, node: Node) -> None:
        if node.int_attr("antialias", 0) and self.mode(node) == "nearest":
            raise PycError("E008", "Resize antialias applies to linear and cubic modes only",
                           where=node.name, hint="drop antialias or use mode linear")
        policy = str(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
        if policy not in _POLICIES:
            raise PycError("E008", f"keep_aspect_ratio_policy {policy!r} is not supported",
                           where=node.name)
        nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
        if nearest not in _NEAREST_MODES:
            raise PycError("E008", f"nearest_mode {nearest!r} is not supported", where=node.name)

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        raise NotImplementedError

    def roi(self, node: Node, rank: int, values: InValues) -> list[tuple[float, float]] | None:
        """Per axis (start, end) of the crop window (tf_crop_and_resize only)."""
        return None

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        self.mode(node)
        self.coordinate_mode(node)
        self.check_supported(node)
        try:
            _, sizes = self.scales_and_sizes(node, x.shape, values)
        except SymbolicError as exc:
            # a constant scale whose floor over a symbolic axis no expression gives (0.7 of
            # `w`): the length is computed at run time (runtime_infer, the CPU target's run-time kernel)
            raise PycError("E008", f"{node.op}'s output length is decided at run time ({exc})",
                           where=f"node {node.name!r}") from exc
        return [TensorType(x.dtype, tuple(sizes))]

    # ------------------------------------------------------------ index tables

    def tables(self, node: Node, shape: tuple[int, ...], values: InValues) -> list[dict[str, object]]:
        """Per axis: `taps` source indices per output coordinate (`idx`, flattened), their
        weights `w` (absent for one tap) and, for tf_crop_and_resize, which outputs lie outside
        the input (`outside`, those take extrapolation_value)."""
        scales, sizes = self.scales_and_sizes(node, shape, values)
        for axis, size in enumerate(list(shape) + list(sizes)):
            check_int32_index(f"axis {axis % len(shape)} of {node.op}", size, f"node {node.name!r}")
        roi = self.roi(node, len(shape), values)
        return [self._axis_table(node, size_in, size_out, scale, None if roi is None else roi[axis])
                for axis, (size_in, size_out, scale) in enumerate(zip(shape, sizes, scales))]

    def _axis_table(self, node: Node, size_in: int, size_out: int, scale: float,
                    roi: tuple[float, float] | None) -> dict[str, object]:
        mode, coords = self.mode(node), self.coordinate_mode(node)
        if size_out == 0:  # nothing to compute on this axis
            return {"taps": 1, "idx": [], "w": None, "outside": None}
        if size_in == 0:
            raise PycError("E009", f"{node.op} cannot resize an empty axis to {size_out} "
                           "elements (there is nothing to sample)", where=node.name)
        if size_out == size_in and math.isclose(scale, 1.0) and \
                (roi is None or (math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0))):
            return {"taps": 1, "idx": list(range(size_out)), "w": None, "outside": None}
        x = _source_coordinates(size_out, scale, size_in, coords, roi)
        outside = None
        if coords == "tf_crop_and_resize":
            outside = [int(v < 0 or v > size_in - 1) for v in x]
        if mode == "nearest":
            nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
            if node.op == "Upsample" or self.since_opset(node) < 11:
                nearest = "floor"
            idx = [min(max(_round(v, nearest), 0), size_in - 1) for v in x]
            return {"taps": 1, "idx": idx, "w": None, "outside": outside}
        exclude_outside = bool(node.attrs.get("exclude_outside", 0))
        if node.attrs.get("antialias", 0):
            idx, weights = _interpolation_taps(x, scale, size_in, self._coefficients(node, mode),
                                               exclude_outside)
        else:
            a = node.float_attr("cubic_coeff_a", -0.75)
            idx, weights = _onnxruntime_taps(x, size_in, mode, a, exclude_outside)
        return {"taps": weights.shape[1], "idx": idx.reshape(-1).tolist(),
                "w": [Scalar(DType.F64, float(v)) for v in weights.reshape(-1)], "outside": outside}

    def _coefficients(self, node: Node, mode: str):  # noqa: ANN202 (a small closure)
        antialias = bool(node.attrs.get("antialias", 0))
        a = node.float_attr("cubic_coeff_a", -0.75)
        if mode == "linear":
            return _linear_antialias if antialias else (lambda r, s: np.array([1 - r, r]))
        return (lambda r, s: _cubic_antialias(r, s, a)) if antialias else (lambda r, s: _cubic(r, a))

    # ------------------------------------------------------------ sizes known at run time

    def resized_axes(self, node: Node, rank: int) -> list[int]:
        """The axes the scales or sizes operand lists, in its order."""
        return list(range(rank))

    def operand(self, node: Node, types: InTypes) -> tuple[int, str] | None:
        """(input index, "scales" or "sizes") of the tensor the output sizes come from; None
        where they are an attribute (Upsample-7)."""
        return None if "scales" in node.attrs else (1, "scales")

    def runtime_infer(self, node: Node, types: InTypes, values: InValues,
                      refusal: PycError, ranges: InRanges) -> list[TensorType]:
        """Scales or sizes computed at run time (issue #15, point 2): each resized axis whose
        value is not known gets a computed dim, bounded by the operand's interval (ops/
        intervals.py: from the declared values of the inputs it comes from): sizes by their
        highest value, scales by floor(axis bound * highest scale) in float32 (as the output
        length is computed: onnxruntime truncates the float product). An element whose
        interval is one value decides its axis at compile time."""
        x = require(types, 0, node)
        self.mode(node)
        coords = self.coordinate_mode(node)
        self.check_supported(node)
        found = self.operand(node, types)
        if (found is None and "scales" not in node.attrs) or node.int_attr("antialias", 0) \
                or str(node.attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise refusal
        if coords == "tf_crop_and_resize":
            self.roi(node, x.rank, values)  # a constant crop window (E008 otherwise)
        index, kind = found if found is not None else (-1, "scales")
        interval = ranges[index] if 0 <= index < len(ranges) else None
        if found is None:  # Upsample-7's scales attribute
            interval = Interval.exact(np.asarray(node.attrs["scales"], np.float64))
        elif interval is None and index < len(values) and values[index] is not None:
            interval = Interval.exact(np.asarray(values[index]))  # constant scales
        if interval is None:
            raise PycError(refusal.code, refusal.what, where=refusal.where,
                           hint=VALUES_HINT) from None
        axes = self.resized_axes(node, x.rank)
        lows, highs = (np.broadcast_to(v, (len(axes),)) if v.ndim == 0 else v.reshape(-1)
                       for v in (interval.lo, interval.hi))
        if highs.size != len(axes):
            raise PycError("E009", f"{node.op} has {highs.size} {kind} for {len(axes)} axes",
                           where=node.name)
        shape = list(x.shape)
        for k, axis in enumerate(axes):
            lo, hi = float(lows[k]), float(highs[k])
            if hi < 0 or (kind == "scales" and hi <= 0):
                raise PycError("E009", f"{node.op} {kind} of axis {axis} are at most {hi} (the "
                               "declared values): no valid output", where=node.name)
            if kind == "sizes":
                shape[axis] = int(hi) if lo == hi else computed_dim(node.name, axis, int(hi))
                continue
            if lo == hi:
                try:
                    shape[axis] = _scaled_length(shape[axis], hi)
                    continue
                except SymbolicError:
                    pass
            bound = math.floor(np.float32(int(x.shape[axis])) * np.float32(hi))
            shape[axis] = computed_dim(node.name, axis, bound)
        return [TensorType(x.dtype, tuple(shape))]

    def static_tables(self, node: Node, graph: Graph) -> bool:
        """Whether the compile-time index tables apply: static shapes, and the scales or sizes
        known (else the CPU target's run-time kernel computes the coordinates at run time)."""
        x, y = graph.types[node.inputs[0]], graph.types[node.outputs[0]]
        if has_dims(x.shape) or has_dims(y.shape):
            return False
        found = self.operand(node, [graph.types.get(v) if v else None for v in node.inputs])
        return found is None or node.inputs[found[0]] in graph.constants

    def runtime_params(self, node: Node, graph: Graph) -> dict[str, object]:
        """The CPU target's run-time kernel's numbers: per axis the input and output sizes (Dims where
        symbolic), how the output size and the scale are found at run time (`kind`: "same",
        an axis left as it is; "sizes": size / axis; "scales": the scale read from the
        operand) and its element `j` in the operand, and the blend (mode, coordinates)."""
        x, y = graph.types[node.inputs[0]], graph.types[node.outputs[0]]
        found = self.operand(node, [graph.types.get(v) if v else None for v in node.inputs])
        index, kind = found if found is not None else (-1, "scales")
        resized = self.resized_axes(node, x.rank)
        attr_scales = [float(v) for v in np.asarray(node.attrs["scales"]).reshape(-1)] \
            if found is None else None
        constant = graph.constants.get(node.inputs[index]) if index >= 0 else None
        axes = []
        for axis, (d_in, d_out) in enumerate(zip(x.shape, y.shape)):
            j = resized.index(axis) if axis in resized else -1
            scale = None
            if attr_scales is not None:
                scale = attr_scales[axis]
            elif constant is not None and kind == "scales" and j >= 0:
                scale = float(np.asarray(constant).reshape(-1)[j])
            same = j < 0 or (_same_dim(d_in, d_out) and (kind == "sizes" or scale == 1.0))
            axes.append({"in": d_in, "out": d_out, "kind": "same" if same else kind, "j": j,
                         "scale": None if scale is None else float(np.float32(scale))})
        mode = self.mode(node)
        nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
        if node.op == "Upsample" or self.since_opset(node) < 11:
            nearest = "floor"
        coords = self.coordinate_mode(node)
        if coords == "tf_crop_and_resize":  # the crop window, constant (runtime_infer)
            values: InValues = [graph.constants.get(v) if v else None for v in node.inputs]
            for axis, (start, end) in enumerate(self.roi(node, x.rank, values) or []):
                axes[axis]["roi"] = [Scalar(DType.F32, start), Scalar(DType.F32, end)]
                axes[axis]["roi_full"] = int(start == 0.0 and end == 1.0)
        return {"runtime": True, "axes": axes, "operand": index, "mode": mode,
                "extrapolation": Scalar(y.dtype, node.float_attr("extrapolation_value", 0.0)),
                "coords": self.coordinate_mode(node), "nearest": nearest,
                "taps": {"nearest": 1, "linear": 2, "cubic": 4}[mode],
                "cubic_a": Scalar(DType.F32, node.float_attr("cubic_coeff_a", -0.75)),
                "exclude_outside": int(bool(node.attrs.get("exclude_outside", 0)))}

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        if not self.static_tables(node, graph):
            return self.runtime_params(node, graph)
        shape = graph.types[node.inputs[0]].shape
        values: InValues = [graph.constants.get(v) if v else None for v in node.inputs]
        axes = self.tables(node, shape, values)
        return {"axes": axes, "out_shape": [len(a["idx"]) // a["taps"] for a in axes],  # type: ignore[arg-type, operator]
                "in_strides": contiguous_strides(shape),
                "separable": self.mode(node) == "cubic" and not node.attrs.get("antialias", 0),
                "extrapolation": Scalar(DType.F64, node.float_attr("extrapolation_value", 0.0))}

    @references.f16_via_f32
    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Every output element blends the product of its axes' source taps (one tap: nearest,
        or an axis left as it is); tf_crop_and_resize outputs outside the input take
        extrapolation_value. The taps, the element type of weights and sums, and the order of
        the sums are the kernel's and onnxruntime's (cubic: along the last blended axis
        first, then each outer axis weights those sums), so that a folded constant holding
        NaN, inf or huge values equals run time."""
        x = np.asarray(inputs[0])
        self.check_supported(node)
        scales, sizes = self.scales_and_sizes(node, x.shape, inputs)
        roi = self.roi(node, x.ndim, inputs)
        tables = [self._reference_taps(node, x.shape[a], sizes[a], scales[a],
                                       None if roi is None else roi[a]) for a in range(x.ndim)]
        y = x
        for axis, (idx, _, _) in enumerate(tables):
            if idx.shape[1] == 1:  # one tap: a gather
                y = np.take(y, idx[:, 0], axis=axis)
        blend = [a for a, (idx, _, _) in enumerate(tables) if idx.shape[1] > 1]
        weights = {a: tables[a][1].astype(x.dtype) for a in blend}
        if self.mode(node) == "cubic" and not node.attrs.get("antialias", 0):
            for axis in reversed(blend):
                y = _blend_axis(y, axis, tables[axis][0], weights[axis])
        elif blend:
            y = _blend_product(y, blend, [tables[a][0] for a in blend], [weights[a] for a in blend])
        outside = np.zeros(sizes, bool)
        for axis, (_, _, away) in enumerate(tables):
            outside |= away.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        y = np.where(outside, x.dtype.type(node.attrs.get("extrapolation_value", 0.0)), y)
        return [np.asarray(y, x.dtype)]

    def _reference_taps(self, node: Node, size_in: int, size_out: int, scale: float,
                        roi: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source indices, weights), both (size_out, taps), and which outputs lie outside
        the input (tf_crop_and_resize) along one axis."""
        mode, coords = self.mode(node), self.coordinate_mode(node)
        if size_out == 0:
            return np.zeros((0, 1), int), np.zeros((0, 1)), np.zeros(0, bool)
        if size_in == 0:
            raise PycError("E009", f"{node.op} cannot resize an empty axis to {size_out} "
                           "elements (there is nothing to sample)", where=node.name)
        if size_out == size_in and math.isclose(scale, 1.0) and \
                (roi is None or (math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0))):
            # an axis kept as it is reads itself (onnxruntime; tf_half_pixel_for_nn with
            # ceil would otherwise shift it by one)
            return np.arange(size_out)[:, None], np.ones((size_out, 1)), np.zeros(size_out, bool)
        x = _source_coordinates(size_out, scale, size_in, coords, roi)
        away = np.array([coords == "tf_crop_and_resize" and (v < 0 or v > size_in - 1) for v in x])
        if mode == "nearest":
            nearest = str(node.attrs.get("nearest_mode", "round_prefer_floor"))
            if node.op == "Upsample" or self.since_opset(node) < 11:
                nearest = "floor"
            idx = [min(max(_round(v, nearest), 0), size_in - 1) for v in x]
            return np.array(idx)[:, None], np.ones((size_out, 1)), away
        exclude_outside = bool(node.attrs.get("exclude_outside", 0))
        if node.attrs.get("antialias", 0):
            idx, weights = _interpolation_taps(x, scale, size_in, self._coefficients(node, mode),
                                               exclude_outside)
        else:  # the taps run time reads: a NaN or inf under a zero weight propagates alike
            a = node.float_attr("cubic_coeff_a", -0.75)
            idx, weights = _onnxruntime_taps(x, size_in, mode, a, exclude_outside)
        return idx, weights, away


def _blend_axis(y: np.ndarray, axis: int, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Along one axis: sum over the taps, in order, of weight * source (in y's type)."""
    total = np.zeros(y.shape[:axis] + (idx.shape[0],) + y.shape[axis + 1:], y.dtype)
    shape = [-1 if a == axis else 1 for a in range(y.ndim)]
    for tap in range(idx.shape[1]):
        total = total + weights[:, tap].reshape(shape) * np.take(y, idx[:, tap], axis=axis)
    return total


def _blend_product(y: np.ndarray, axes: list[int], idx: list[np.ndarray],
                   weights: list[np.ndarray]) -> np.ndarray:
    """Over every combination of the axes' taps (the first axis outermost): the product of
    their weights (left to right) times the source, summed in order (in y's type)."""
    out_shape = list(y.shape)
    for axis, table in zip(axes, idx):
        out_shape[axis] = table.shape[0]
    total = np.zeros(out_shape, y.dtype)
    for combo in np.ndindex(*(table.shape[1] for table in idx)):
        source, weight = y, None
        for axis, table, w, tap in zip(axes, idx, weights, combo):
            source = np.take(source, table[:, tap], axis=axis)
            w_axis = w[:, tap].reshape([-1 if a == axis else 1 for a in range(y.ndim)])
            weight = w_axis if weight is None else weight * w_axis
        total = total + weight * source
    return total


def _source_coordinates(size_out: int, scale: float, size_in: int, mode: str,
                        roi: tuple[float, float] | None) -> list[float]:
    """The ONNX coordinate transforms; the resized length is size_in * scale (not rounded)."""
    resized = size_in * scale
    result = []
    for out in range(size_out):
        if mode == "asymmetric":
            x = out / scale
        elif mode == "align_corners":
            x = 0.0 if resized <= 1 else out * (size_in - 1) / (resized - 1)
        elif mode == "pytorch_half_pixel":
            x = (out + 0.5) / scale - 0.5 if resized > 1 else 0.0
        elif mode == "tf_half_pixel_for_nn":
            x = (out + 0.5) / scale
        elif mode == "half_pixel_symmetric":
            offset = size_in / 2 * (1 - size_out / resized)
            x = offset + (out + 0.5) / scale - 0.5
        elif mode == "tf_crop_and_resize":
            start, end = roi if roi is not None else (0.0, 1.0)
            x = (end - start) * (size_in - 1) / 2 if size_out == 1 else \
                out * (end - start) * (size_in - 1) / (size_out - 1)
            x += start * (size_in - 1)
        else:  # half_pixel
            x = (out + 0.5) / scale - 0.5
        result.append(x)
    return result


def _interpolation_taps(x: list[float], scale: float, size_in: int, coefficients,  # noqa: ANN001
                        exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights per output coordinate, as the ONNX reference picks them: the
    filter's n taps nearest to x (ties to the smaller index) on an edge-padded input."""
    rows, starts = [], []
    for v in x:
        ratio = 1.0 if v == math.floor(v) else v - math.floor(v)
        coeffs = np.asarray(coefficients(ratio, scale), np.float64)
        n = len(coeffs)
        pad = math.ceil(n / 2)
        p = math.floor(v + pad)
        frac = v + pad - p
        if n % 2 == 0:
            offset = -(n // 2) if frac == 0 else -(n // 2) + 1
        else:
            offset = -((n - 1) // 2) if frac <= 0.5 else -((n - 1) // 2) + 1
        rows.append(coeffs)
        starts.append(p + offset - pad)
    return _tap_table(rows, starts, size_in, exclude_outside)


def _onnxruntime_taps(x: list[float], size_in: int, mode: str, a: float,
                      exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """The taps onnxruntime reads (same values as the ONNX reference's for finite inputs, but
    a NaN or inf under a zero-weight tap gives NaN only when the same tap is read): linear
    clamps x into the input and reads floor(x) and the next index, so an edge or an integer x
    still reads a neighbour with weight 0; cubic reads floor(x) - 1 ... floor(x) + 2 (edge
    padded) with weights for x - floor(x), so an integer x reads three neighbours with weight 0."""
    rows, starts = [], []
    for v in x:
        if mode == "linear":
            v = min(max(v, 0.0), size_in - 1.0)
            first = min(math.floor(v), size_in - 1)
            ratio = v - first
            coeffs = np.array([0.5, 0.5]) if first == size_in - 1 else np.array([1 - ratio, ratio])
        else:  # onnxruntime's coordinate and coefficients are float32 arithmetic
            v32 = np.float32(v)
            first = int(np.floor(v32)) - 1
            coeffs = _cubic(v32 - np.floor(v32), np.float32(a)).astype(np.float64)
        rows.append(coeffs)
        starts.append(first)
    return _tap_table(rows, starts, size_in, exclude_outside)


def _tap_table(rows: list[np.ndarray], starts: list[int], size_in: int,
               exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight tables from each output position's first tap and coefficients:
    `exclude_outside` zeroes taps outside the input and renormalizes; indexes clamp to the edge."""
    weights = np.stack(rows)
    idx = np.asarray(starts)[:, None] + np.arange(weights.shape[1])[None, :]
    if exclude_outside:
        weights = np.where((idx < 0) | (idx >= size_in), 0.0, weights)
        total = weights.sum(axis=1, keepdims=True)
        weights = weights / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, size_in - 1), weights


def _cubic(r: float, a: float) -> np.ndarray:
    """Keys' cubic convolution weights of the 4 taps around a point `r` past the 2nd tap (in
    the precision of `r` and `a`)."""
    return np.array([((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                     ((a + 2) * r - (a + 3)) * r * r + 1,
                     ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                     ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a])


def _cubic_antialias(r: float, scale: float, a: float) -> np.ndarray:
    """Downsampling stretches the cubic filter by 1/scale (more taps), weights normalized."""
    scale = min(scale, 1.0)

    def weight(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0

    start = int(math.floor(-2 / scale) + 1)
    coeffs = np.array([weight(scale * (i - r)) for i in range(start, 2 - start)])
    return coeffs / coeffs.sum()


def _linear_antialias(r: float, scale: float) -> np.ndarray:
    scale = min(scale, 1.0)
    start = int(math.floor(-1 / scale) + 1)
    args = (np.arange(start, 2 - start) - r) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _scaled_length(length: DimLike, scale: float) -> DimLike:
    """floor(length * scale) in float32, as the scales tensor is (10 * 0.7f is 7, not 6). A
    symbolic length (issue #15) scales by an integer (upsampling: exact below 2**24) or by the
    exact inverse of one (0.5, 0.25: a floor division); other scales round differently at
    different lengths, which no expression here says: SymbolicError (the node is refused)."""
    if isinstance(length, Dim):
        factor = float(np.float32(scale))
        if factor.is_integer() and int(length) * factor < 2**24:
            return length * int(factor)
        inverse = round(1 / factor) if factor > 0 else 0
        if inverse > 0 and factor * inverse == 1.0:
            return floor_div(length, inverse)
        raise SymbolicError(f"floor({length} * {factor}) is not an expression of the dims")
    return int(math.floor(np.float32(length) * np.float32(scale)))


def _same_dim(a: DimLike, b: DimLike) -> bool:
    """Whether two sizes are the same number or the same symbolic expression."""
    if isinstance(a, Dim) or isinstance(b, Dim):
        return isinstance(a, Dim) and isinstance(b, Dim) and str(a) == str(b)
    return int(a) == int(b)


def _round(x: float, mode: str) -> int:
    if mode == "floor":
        return int(math.floor(x))
    if mode == "ceil":
        return int(math.ceil(x))
    if x == math.floor(x) + 0.5:  # exactly halfway
        return int(math.floor(x)) if mode == "round_prefer_floor" else int(math.ceil(x))
    return int(math.floor(x + 0.5))


@register
class Resize(ResizeBase):
    name = "Resize"
    since = 10
    static_inputs = (1, 2, 3)

    def since_opset(self, node: Node) -> int:
        # Resize-10 has (X, scales) and asymmetric coordinates; 11+ has (X, roi, scales, sizes)
        return 10 if len(node.inputs) == 2 else 11

    def axes(self, node: Node, rank: int) -> list[int]:
        return [normalize_axis(a, rank, node) for a in ints_attr(node, "axes")] or list(range(rank))

    def resized_axes(self, node: Node, rank: int) -> list[int]:
        return self.axes(node, rank)

    def operand(self, node: Node, types: InTypes) -> tuple[int, str] | None:
        if len(node.inputs) == 2:  # Resize-10: (X, scales)
            return 1, "scales"
        sizes = types[3] if len(node.inputs) > 3 and node.inputs[3] and len(types) > 3 else None
        if sizes is not None and sizes.numel != 0:
            return 3, "sizes"
        return (2, "scales") if len(node.inputs) > 2 and node.inputs[2] else None

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        rank = len(shape)
        axes = self.axes(node, rank)
        scale_index, size_index = (1, None) if len(node.inputs) == 2 else (2, 3)
        sizes_value = values[size_index] if size_index is not None and \
            len(node.inputs) > size_index and node.inputs[size_index] else None
        scales_value = values[scale_index] if len(node.inputs) > scale_index and \
            node.inputs[scale_index] else None
        scales, sizes = [1.0] * rank, list(shape)
        if sizes_value is not None and np.asarray(sizes_value).size:
            for axis, size in zip(axes, np.asarray(sizes_value).reshape(-1)):
                size = as_dim(size)
                # sizes of symbolic dims (issue #15: a Shape of another tensor, values of an
                # input with declared values) or of a symbolic axis: the scale is size / axis
                # at run time (the kernel computes it; the CPU target's run-time kernel)
                sizes[axis] = size
                scales[axis] = math.nan if has_dims((size, shape[axis])) else int(size) / shape[axis]
            policy = str(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
            if policy != "stretch" and any(math.isnan(scales[a]) for a in axes):
                raise PycError("E051", f"Resize keep_aspect_ratio_policy {policy!r} with sizes "
                               "known only at run time is not supported", where=f"node {node.name!r}",
                               hint="use keep_aspect_ratio_policy stretch, or constant sizes")
            if policy != "stretch":  # one scale for every resized axis, sizes rounded half up
                pick = min if policy == "not_larger" else max
                scale = pick(scales[a] for a in axes)
                for axis in axes:
                    scales[axis], sizes[axis] = scale, int(scale * shape[axis] + 0.5)
        elif scales_value is not None and np.asarray(scales_value).size:
            for axis, scale in zip(axes, np.asarray(scales_value).reshape(-1)):
                scales[axis] = float(scale)
                sizes[axis] = _scaled_length(shape[axis], scale)
        elif any(len(node.inputs) > i and node.inputs[i] for i in (scale_index, size_index or 0)
                 if i):
            # issue #15, point 2: sizes or scales read from input values (directly or through
            # shape arithmetic) are known only at run time; the kernel's index tables are not
            which = "sizes" if size_index is not None and len(node.inputs) > size_index and \
                node.inputs[size_index] else "scales"
            raise PycError("E008", f"Resize {node.name!r} takes its {which} from a value "
                           "computed at run time (from input values or tensor "
                           "data), and Resize builds its index tables at compile time",
                           where=f"node {node.name!r}",
                           hint="give Resize constant scales or sizes (with symbolic input dims, "
                           "--input-shape, constant integer scales keep the output symbolic), "
                           "or fix the values the sizes are computed from")
        else:
            raise PycError("E008", "Resize needs constant scales or sizes", where=node.name,
                           hint="fix the input shapes so the scale computation folds")
        return scales, sizes

    def roi(self, node: Node, rank: int, values: InValues) -> list[tuple[float, float]] | None:
        if self.coordinate_mode(node) != "tf_crop_and_resize":
            return None
        value = values[1] if len(values) > 1 and node.inputs[1] else None
        if value is None or not np.asarray(value).size:
            raise PycError("E008", "Resize tf_crop_and_resize needs a constant roi (input 1)",
                           where=node.name)
        axes = self.axes(node, rank)
        flat = [float(v) for v in np.asarray(value).reshape(-1)]
        if len(flat) != 2 * len(axes):
            raise PycError("E009", f"Resize roi has {len(flat)} values, expected {2 * len(axes)}",
                           where=node.name)
        result = [(0.0, 1.0)] * rank
        for i, axis in enumerate(axes):
            result[axis] = (flat[i], flat[len(axes) + i])
        return result


@register
class Upsample(ResizeBase):
    name = "Upsample"
    since = 7
    until = 9
    static_inputs = (1,)  # Upsample-9's scales input

    def scales_and_sizes(self, node: Node, shape: tuple[int, ...],
                         values: InValues) -> tuple[list[float], list[int]]:
        if "scales" in node.attrs:
            scales = [float(s) for s in node.attrs["scales"]]  # type: ignore[union-attr]
        elif len(values) > 1 and values[1] is not None:
            scales = [float(s) for s in np.asarray(values[1]).reshape(-1)]
        else:
            raise PycError("E008", "Upsample needs constant scales", where=node.name)
        return scales, [_scaled_length(d, s) for d, s in zip(shape, scales)]

