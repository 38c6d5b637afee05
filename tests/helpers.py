"""Small shared helpers for the IR / pass / planner tests.

- build tiny ONNX models with onnx.helper (random weights from a numpy Generator),
- `randomize_initializers(model, rng)`: fresh random float initializers, int ones untouched,
- write a model to a tmp_path and import / run passes on it,
- a numpy reference evaluator for un-fused PyC graphs (with an independent Conv reference),
- `graphs_equal`: structural equality of two PyC graphs, constants compared bit for bit.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.ir.annotations import KernelChoice
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.passes.context import BuildOptions, PassContext
from pyc_cli.passes.pipeline import PIPELINE
from pyc_cli.passes.tuning import KernelSignature
from pyc_cli.targets import get_target

MODELS_DIR = Path(__file__).parent / "models"

# name -> (path, input shapes) for the three committed reference models
REFERENCE_MODELS: dict[str, tuple[Path, dict[str, tuple[int, ...]]]] = {
    "mlp": (MODELS_DIR / "mlp.onnx", {"x": (2, 64)}),
    "cnn": (MODELS_DIR / "cnn.onnx", {"image": (2, 3, 32, 32)}),
    "transformer": (MODELS_DIR / "transformer.onnx",
                    {"input_ids": (2, 16), "attention_mask": (2, 16)}),
}
MODES = ("latency_first", "balanced", "memory_first")
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}


# ---------------------------------------------------------------- building ONNX models


# the warnings generated C must not raise (-std=c11 is one of the build's own flags)
STRICT_C = ["-Wall", "-Wextra", "-pedantic", "-Werror"]


def assert_strict_c11(compiler: str, artifact: Path, sources: tuple[str, ...] = ("model.c",)
                      ) -> None:
    """Each of the artifact's `sources` compiles with `compiler` (skipped where it is not
    installed) under the artifact's recorded flags plus STRICT_C: no warning at all."""
    found = shutil.which(compiler)
    if found is None:
        pytest.skip(f"{compiler} is not installed here (CI installs gcc and clang: .ci/run)")
    flags = json.loads((artifact / "manifest.json").read_text())["toolchain"]["flags"]
    for source in sources:
        result = subprocess.run([found, *flags, *STRICT_C, "-c", "-o", os.devnull, source],
                                cwd=artifact / "src", capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{compiler} {source} of {artifact}:\n{result.stderr[-4000:]}"


REPO = Path(__file__).resolve().parent.parent


def compile_runtime_driver(driver: str, out: Path) -> Path:
    """tests/c/`driver` linked with runtime_c/pyc_runtime.c into `out`, compiled as strictly as
    the generated C (-std=c11 plus STRICT_C); skipped where no C compiler is installed."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    subprocess.run([compiler, "-std=c11", *STRICT_C, "-O1", "-I", str(REPO / "runtime_c"),
                    str(REPO / "tests" / "c" / driver), str(REPO / "runtime_c" / "pyc_runtime.c"),
                    "-o", str(out), "-lm"], check=True)
    return out


class Forced:
    """A tuning database naming one candidate with fixed parameters for every node of one op."""

    def __init__(self, op: str, candidate: str, params: dict[str, int]) -> None:
        self.op, self.candidate, self.params = op, candidate, params

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        if signature.op != self.op:
            return None
        return KernelChoice(self.candidate, dict(self.params))


def rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    """A float32 array of standard normal values times `scale`."""
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def init(name: str, array: np.ndarray) -> TensorProto:
    """An ONNX initializer from a numpy array."""
    return numpy_helper.from_array(np.asarray(array), name)


def vinfo(name: str, shape: tuple[int, ...] | list[int] | None,
          elem_type: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape))


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
               outputs: list[onnx.ValueInfoProto], initializers: list[TensorProto] | None = None,
               opset: int = 17, name: str = "test") -> onnx.ModelProto:
    """A checked ONNX model (IR version 8, default-domain opset `opset`)."""
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pyc-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Path:
    path = Path(tmp_path) / name
    onnx.save(model, str(path))
    return path


def _positive_initializers(model: onnx.ModelProto) -> set[str]:
    """Initializers that must stay positive to keep the model meaningful (BatchNorm variance)."""
    return {node.input[4] for node in model.graph.node
            if node.op_type == "BatchNormalization" and len(node.input) > 4}


def randomize_initializers(model: onnx.ModelProto, rng: np.random.Generator) -> onnx.ModelProto:
    """A copy of `model` whose float initializers hold fresh random values of the same shape.

    Integer initializers (shapes, indices, axes) are left exactly as they are. Each tensor keeps
    the mean and spread of the original (a trained or exporter-initialized model is scaled so
    activations stay O(1); unscaled N(0,1) weights would make a deep model ill-conditioned and
    test float32 rounding instead of the compiler). BatchNorm variances are drawn positive.
    """
    out = copy.deepcopy(model)
    positive = _positive_initializers(out)
    for index, tensor in enumerate(out.graph.initializer):
        if tensor.data_type not in FLOAT_TYPES:
            continue
        old = numpy_helper.to_array(tensor)
        spread = float(np.std(old)) if old.size > 1 and np.std(old) > 0 else 1.0
        fresh = float(np.mean(old)) + spread * rng.standard_normal(old.shape)
        if tensor.name in positive:
            fresh = np.abs(fresh) + 0.1
        new = numpy_helper.from_array(fresh.astype(old.dtype), tensor.name)
        out.graph.initializer[index].CopyFrom(new)
    return out


# ---------------------------------------------------------------- PyC side


def import_onnx(model: onnx.ModelProto, tmp_path: Path,
                input_shapes: dict[str, tuple[int, ...]] | None = None,
                name: str = "model.onnx") -> Graph:
    """Write `model` under tmp_path and import it as a typed PyC graph."""
    return import_model(write_model(model, tmp_path, name), input_shapes)


def new_ctx(mode: str = "balanced", cpu: str = "native") -> PassContext:
    """A pass context for the CPU target built for `cpu` (its ISA decides which kernel
    candidates exist: "portable" for the same choices on every machine)."""
    return PassContext(BuildOptions(mode=mode), target=get_target("cpu", cpu))


def run_passes(graph: Graph, names: list[str] | tuple[str, ...], ctx: PassContext | None = None,
               check: bool = True) -> tuple[Graph, PassContext]:
    """Run the named pipeline passes (in the given order) on a clone, verifying after each."""
    ctx = ctx or new_ctx()
    table = dict(PIPELINE)
    graph = graph.clone()
    for name in names:
        graph = table[name](graph, ctx)
        if check:
            verify(graph, registry.lookup, after=name, kernels=ctx.kernels.candidate_names)
    return graph, ctx


def passes_before(name: str) -> list[str]:
    """The pipeline passes that run before `name`."""
    order = [n for n, _ in PIPELINE]
    return order[: order.index(name)]


def decisions(ctx: PassContext, action: str, pass_name: str | None = None) -> list:
    return [d for d in ctx.decisions
            if d.action == action and (pass_name is None or d.pass_name == pass_name)]


# ---------------------------------------------------------------- numpy references


def conv2d_nchw(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                pads: tuple[int, int, int, int] = (0, 0, 0, 0),
                strides: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Direct float64 2-D convolution (group 1, no dilation), written independently of PyC."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, _, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh, ow = (h - kh) // strides[0] + 1, (wd - kw) // strides[1] + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    if b is not None:
        out += b.astype(np.float64).reshape(1, -1, 1, 1)
    return out


def batchnorm_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                  var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)


def evaluate_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate an un-fused PyC graph with the ops' numpy references (Conv: `conv2d_nchw`)."""
    env: dict[str, np.ndarray] = dict(graph.constants)
    env.update(feeds)
    for node in graph.nodes:
        inputs = [env[name] if name else None for name in node.inputs]
        if node.op == "Conv":
            pads = tuple(node.attrs.get("pads", [0, 0, 0, 0]))
            strides = tuple(node.attrs.get("strides", [1, 1]))
            bias = inputs[2] if len(inputs) > 2 else None
            results = [conv2d_nchw(inputs[0], inputs[1], bias, pads, strides)]
        else:
            results = registry.get(node.op).evaluate(node, inputs)
        for name, value in zip(node.outputs, results):
            if name:
                env[name] = np.asarray(value)
    return {name: env[name] for name in graph.outputs}


# ---------------------------------------------------------------- graph comparison


def arrays_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (so -0.0 != 0.0 and NaN == NaN of the same bits)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def attrs_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and arrays_identical(a, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(attrs_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return type(a) is type(b) and a == b


def graph_differences(a: Graph, b: Graph) -> list[str]:
    """Human-readable differences between two graphs (empty when they are equal)."""
    problems: list[str] = []
    for field in ("name", "opset", "inputs", "outputs"):
        if getattr(a, field) != getattr(b, field):
            problems.append(f"{field}: {getattr(a, field)!r} != {getattr(b, field)!r}")
    if a.types != b.types:
        problems.append(f"types differ: {set(a.types.items()) ^ set(b.types.items())}")
    if set(a.constants) != set(b.constants):
        problems.append(f"constant names differ: {set(a.constants) ^ set(b.constants)}")
    for name in set(a.constants) & set(b.constants):
        if not arrays_identical(a.constants[name], b.constants[name]):
            problems.append(f"constant {name!r} differs")
    if len(a.nodes) != len(b.nodes):
        problems.append(f"node count {len(a.nodes)} != {len(b.nodes)}")
    for x, y in zip(a.nodes, b.nodes):
        if (x.op, x.name, x.inputs, x.outputs) != (y.op, y.name, y.inputs, y.outputs):
            problems.append(f"node {x.name!r} differs from {y.name!r}")
        elif set(x.attrs) != set(y.attrs):
            problems.append(f"node {x.name!r} attr keys {sorted(x.attrs)} != {sorted(y.attrs)}")
        else:
            problems += [f"node {x.name!r} attr {k!r}: {x.attrs[k]!r} != {y.attrs[k]!r}"
                         for k in x.attrs if not attrs_equal(x.attrs[k], y.attrs[k])]
        if x.ann != y.ann:
            problems.append(f"node {x.name!r} annotations {x.ann!r} != {y.ann!r}")
    return problems
