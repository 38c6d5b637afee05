"""Recurrent layers: LSTM, GRU and RNN (forward, reverse, bidirectional; both layouts;
per-batch sequence lengths; initial states; peepholes; clip; any ONNX activation list).

The sequence length is static, so one kernel runs the whole recurrence: for each direction
and batch row it keeps the hidden (and cell) state and the gate pre-activations in a small
planner-provided workspace and walks the time steps. Batch rows are independent, so they run
one after another and the workspace holds a single row's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, register, require

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


@dataclass(frozen=True)
class Activation:
    """One ONNX recurrent activation: how many of activation_alpha/beta it consumes and their
    defaults (onnxruntime's rules), and its numpy reference (float64)."""

    uses_alpha: bool
    uses_beta: bool
    alpha: float
    beta: float
    numpy: Callable[[np.ndarray, float, float], np.ndarray]


def _hard_sigmoid(h: np.ndarray) -> np.ndarray:
    """clamp(h, 0, 1) with NaN -> 0, as onnxruntime's recurrent HardSigmoid."""
    return np.where(h > 0, np.minimum(h, 1.0), 0.0)


def _sigmoid(x: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# lower-case names; the template's `activation` macro has one C expression per key
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(False, False, 0.0, 0.0, _sigmoid),
    "tanh": Activation(False, False, 0.0, 0.0, lambda x, a, b: np.tanh(x)),
    # onnxruntime's recurrent Relu and HardSigmoid turn NaN into 0 (unlike the standalone ops)
    "relu": Activation(False, False, 0.0, 0.0, lambda x, a, b: np.where(x > 0, x, 0.0)),
    "affine": Activation(True, True, 1.0, 0.0, lambda x, a, b: a * x + b),
    "leakyrelu": Activation(True, False, 0.01, 0.0, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": Activation(True, False, 1.0, 0.0, lambda x, a, b: np.where(x > a, x, 0.0)),
    "scaledtanh": Activation(True, True, 1.0, 1.0, lambda x, a, b: a * np.tanh(b * x)),
    "hardsigmoid": Activation(True, True, 0.2, 0.5,
                              lambda x, a, b: _hard_sigmoid(a * x + b)),
    "elu": Activation(True, False, 1.0, 0.0, lambda x, a, b: np.where(x >= 0, x, a * np.expm1(x))),
    "softsign": Activation(False, False, 0.0, 0.0, lambda x, a, b: x / (1.0 + np.abs(x))),
    "softplus": Activation(False, False, 0.0, 0.0, lambda x, a, b: np.logaddexp(0.0, x)),
}


@dataclass(frozen=True)
class BoundActivation:
    name: str  # a key of ACTIVATIONS (never a string from the model)
    alpha: float
    beta: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ACTIVATIONS[self.name].numpy(x, self.alpha, self.beta)


@dataclass(frozen=True)
class Geometry:
    """Sizes of one recurrent node: T steps, B batch rows, I inputs, H hidden, D directions."""

    T: int
    B: int
    I: int  # noqa: E741 (the ONNX spec's name)
    H: int
    D: int
    layout: int


class Recurrent(OpDef):
    """Shared rules of LSTM/GRU/RNN. Inputs: X, W, R, B, sequence_lens, initial_h (and for
    LSTM initial_c, P); outputs Y, Y_h (and for LSTM Y_c)."""

    since = 7
    category = KERNEL
    dtypes = (DType.F32, DType.F64)
    gates: ClassVar[int] = 1
    default_activations: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ attributes

    def direction(self, node: Node) -> str:
        direction = str(node.attrs.get("direction", "forward"))
        if direction not in DIRECTIONS:
            raise PycError("E008", f"{node.op} direction {direction!r} is not one of "
                           f"{sorted(DIRECTIONS)}", where=f"node {node.name!r}")
        return direction

    def runs_backwards(self, node: Node, d: int) -> bool:
        """Direction `d` walks the sequence from its end (reverse, or bidirectional's second)."""
        return self.direction(node) == "reverse" or d == 1

    def geometry(self, node: Node, x: tuple[int, ...], w: tuple[int, ...], r: tuple[int, ...]
                 ) -> Geometry:
        layout = node.int_attr("layout", 0)
        if layout not in (0, 1) or len(x) != 3 or len(w) != 3 or len(r) != 3:
            raise PycError("E009", f"{node.op} needs rank-3 X, W, R and layout 0 or 1",
                           where=f"node {node.name!r}")
        steps, batch = (x[1], x[0]) if layout else (x[0], x[1])
        if node.attrs.get("weights_transposed"):  # canonicalize's layout: [D, I, G*H], [D, H, G*H]
            w, r = (w[0], w[2], w[1]), (r[0], r[2], r[1])
        hidden = node.int_attr("hidden_size", r[2])
        directions = DIRECTIONS[self.direction(node)]
        if w != (directions, self.gates * hidden, x[2]) or r != (directions, self.gates * hidden, hidden):
            raise PycError("E009", f"{node.op} weights W{list(w)} R{list(r)} do not match "
                           f"{directions} direction(s), hidden_size {hidden}, input size {x[2]}",
                           where=f"node {node.name!r}")
        return Geometry(steps, batch, x[2], hidden, directions, layout)

    def activations(self, node: Node, directions: int) -> list[list[BoundActivation]]:
        """Per direction, the bound activation functions (f, g, h for LSTM)."""
        names = [str(n) for n in node.attrs.get("activations", [])] or \
            list(self.default_activations) * directions  # type: ignore[union-attr]
        per = len(self.default_activations)
        if len(names) == per and directions == 2:
            names = names * 2
        if len(names) != per * directions:
            raise PycError("E008", f"{node.op} needs {per * directions} activations, got "
                           f"{len(names)}", where=f"node {node.name!r}")
        alphas = [float(a) for a in node.attrs.get("activation_alpha", [])]  # type: ignore[union-attr]
        betas = [float(b) for b in node.attrs.get("activation_beta", [])]  # type: ignore[union-attr]
        bound = []
        for name in names:
            key = name.lower()
            if key not in ACTIVATIONS:
                raise PycError("E008", f"{node.op} activation {name!r} is not supported",
                               where=f"node {node.name!r}",
                               hint=f"supported: {', '.join(sorted(ACTIVATIONS))}")
            spec = ACTIVATIONS[key]
            alpha = alphas.pop(0) if spec.uses_alpha and alphas else spec.alpha
            beta = betas.pop(0) if spec.uses_beta and betas else spec.beta
            if not (np.isfinite(alpha) and np.isfinite(beta)):
                raise PycError("E008", f"{node.op} activation {name!r} has a non-finite parameter",
                               where=f"node {node.name!r}")
            bound.append(BoundActivation(key, alpha, beta))
        return [bound[d * per:(d + 1) * per] for d in range(directions)]

    def clip(self, node: Node) -> float | None:
        value = node.attrs.get("clip")
        if value is None:
            return None
        if not np.isfinite(float(value)):  # type: ignore[arg-type]
            raise PycError("E008", f"{node.op} clip must be finite", where=f"node {node.name!r}")
        return float(value)  # type: ignore[arg-type]

    # ------------------------------------------------------------ shapes

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x, w, r = (require(types, i, node) for i in range(3))
        geo = self.geometry(node, x.shape, w.shape, r.shape)
        self.activations(node, geo.D)
        seq = (geo.B, geo.T, geo.D, geo.H) if geo.layout else (geo.T, geo.D, geo.B, geo.H)
        state = (geo.B, geo.D, geo.H) if geo.layout else (geo.D, geo.B, geo.H)
        shapes = [seq] + [state] * len(self.state_inputs())
        return [TensorType(x.dtype, s) for s in shapes][: len(node.outputs)]

    def flops(self, node: Node, graph: Graph) -> int:
        x, w, r = (graph.types[node.inputs[i]].shape for i in range(3))
        geo = self.geometry(node, x, w, r)
        return 2 * geo.T * geo.B * geo.D * self.gates * geo.H * (geo.I + geo.H)

    # ------------------------------------------------------------ reference

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        arrays = list(inputs) + [None] * (8 - len(inputs))
        x, w, r = (np.asarray(a, np.float64) for a in arrays[:3])
        geo = self.geometry(node, x.shape, w.shape, r.shape)  # reads the stored layout itself
        if node.attrs.get("weights_transposed"):
            w, r = w.transpose(0, 2, 1), r.transpose(0, 2, 1)
        if geo.layout:
            x = x.transpose(1, 0, 2)
        states = [self._initial(arrays[i], geo) for i in self.state_inputs()]
        lengths = np.full(geo.B, geo.T) if arrays[4] is None else np.asarray(arrays[4])
        y = np.zeros((geo.T, geo.D, geo.B, geo.H))
        finals = [np.zeros((geo.D, geo.B, geo.H)) for _ in states]
        bias = np.zeros((geo.D, 2 * self.gates * geo.H)) if arrays[3] is None else arrays[3]
        peep = None if len(arrays) < 8 or arrays[7] is None else np.asarray(arrays[7], np.float64)
        acts = self.activations(node, geo.D)
        for d in range(geo.D):
            for b in range(geo.B):
                state = [s[d, b].copy() for s in states]
                length = int(min(max(lengths[b], 0), geo.T))
                for step in range(length):
                    t = length - 1 - step if self.runs_backwards(node, d) else step
                    state = self.cell(node, x[t, b], w[d], r[d], np.asarray(bias[d], np.float64),
                                      None if peep is None else peep[d], state, acts[d])
                    y[t, d, b] = state[0]
                for final, value in zip(finals, state):
                    final[d, b] = value if length > 0 else 0.0  # as onnxruntime: empty -> zeros
        dtype = np.asarray(inputs[0]).dtype
        if geo.layout:
            y = y.transpose(2, 0, 1, 3)
            finals = [f.transpose(1, 0, 2) for f in finals]
        return [a.astype(dtype) for a in [y] + finals]

    def state_inputs(self) -> tuple[int, ...]:
        return (5,)

    def _initial(self, value: np.ndarray | None, geo: Geometry) -> np.ndarray:
        if value is None:
            return np.zeros((geo.D, geo.B, geo.H))
        array = np.asarray(value, np.float64)
        return array.transpose(1, 0, 2) if geo.layout else array

    def _clipped(self, node: Node, v: np.ndarray) -> np.ndarray:
        clip = self.clip(node)
        return v if clip is None else np.clip(v, -clip, clip)

    def cell(self, node: Node, x: np.ndarray, w: np.ndarray, r: np.ndarray, bias: np.ndarray,
             peep: np.ndarray | None, state: list[np.ndarray], acts: list[BoundActivation]
             ) -> list[np.ndarray]:
        raise NotImplementedError

    # ------------------------------------------------------------ lowering

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x, w, r = (graph.types[node.inputs[i]].shape for i in range(3))
        geo = self.geometry(node, x, w, r)
        present = [bool(v) for v in node.inputs] + [False] * 8
        outputs = [bool(v) for v in node.outputs] + [False] * 3
        T, B, I, H, D = geo.T, geo.B, geo.I, geo.H, geo.D  # noqa: N806, E741
        return {
            "cell": node.op, "T": T, "B": B, "I": I, "H": H, "D": D, "G": self.gates,
            "reverse": [int(self.runs_backwards(node, d)) for d in range(D)],
            "x_t": B * I if not geo.layout else I,
            "x_b": I if not geo.layout else T * I,
            "y_t": D * B * H if not geo.layout else D * H,
            "y_d": B * H if not geo.layout else H,
            "y_b": H if not geo.layout else T * D * H,
            "s_d": B * H if not geo.layout else H,
            "s_b": H if not geo.layout else D * H,
            "has_bias": present[3], "has_lengths": present[4], "has_h0": present[5],
            "has_c0": present[6], "has_peepholes": present[7],
            "has_yh": outputs[1], "has_yc": outputs[2],
            "clip": self.clip(node),
            "input_forget": node.int_attr("input_forget", 0),
            "linear_before_reset": node.int_attr("linear_before_reset", 0),
            "acts": self.activations(node, D),
        }


@register
class LSTM(Recurrent):
    """Gates i, o, f, c (W/R row blocks in that order); peepholes P = [Pi, Po, Pf]."""

    name = "LSTM"
    gates = 4
    default_activations = ("sigmoid", "tanh", "tanh")

    def state_inputs(self) -> tuple[int, ...]:
        return (5, 6)

    def cell(self, node: Node, x: np.ndarray, w: np.ndarray, r: np.ndarray, bias: np.ndarray,
             peep: np.ndarray | None, state: list[np.ndarray], acts: list[BoundActivation]
             ) -> list[np.ndarray]:
        h, c = state
        hidden = h.size
        gates = w @ x + r @ h + bias[:4 * hidden] + bias[4 * hidden:]
        gi, go, gf, gc = np.split(gates, 4)
        pi, po, pf = np.split(peep, 3) if peep is not None else (0.0, 0.0, 0.0)
        f, g, act_h = acts
        i = f(self._clipped(node, gi + pi * c))
        forget = 1.0 - i if node.attrs.get("input_forget", 0) else f(self._clipped(node, gf + pf * c))
        c = forget * c + i * g(self._clipped(node, gc))
        o = f(self._clipped(node, go + po * c))
        return [o * act_h(c), c]


@register
class GRU(Recurrent):
    """Gates z, r, h (W/R row blocks in that order); `linear_before_reset` applies the reset
    gate after the recurrent product."""

    name = "GRU"
    gates = 3
    default_activations = ("sigmoid", "tanh")

    def cell(self, node: Node, x: np.ndarray, w: np.ndarray, r: np.ndarray, bias: np.ndarray,
             peep: np.ndarray | None, state: list[np.ndarray], acts: list[BoundActivation]
             ) -> list[np.ndarray]:
        (h,) = state
        hidden = h.size
        wb, rb = bias[:3 * hidden], bias[3 * hidden:]
        gx = w @ x + wb
        gh = r[:2 * hidden] @ h + rb[:2 * hidden]
        f, g = acts
        z = f(self._clipped(node, gx[:hidden] + gh[:hidden]))
        reset = f(self._clipped(node, gx[hidden:2 * hidden] + gh[hidden:]))
        if node.attrs.get("linear_before_reset", 0):
            candidate = gx[2 * hidden:] + reset * (r[2 * hidden:] @ h + rb[2 * hidden:])
        else:
            candidate = gx[2 * hidden:] + r[2 * hidden:] @ (reset * h) + rb[2 * hidden:]
        return [(1.0 - z) * g(self._clipped(node, candidate)) + z * h]


@register
class RNN(Recurrent):
    name = "RNN"
    gates = 1
    default_activations = ("tanh",)

    def cell(self, node: Node, x: np.ndarray, w: np.ndarray, r: np.ndarray, bias: np.ndarray,
             peep: np.ndarray | None, state: list[np.ndarray], acts: list[BoundActivation]
             ) -> list[np.ndarray]:
        (h,) = state
        hidden = h.size
        return [acts[0](self._clipped(node, w @ x + r @ h + bias[:hidden] + bias[hidden:]))]
