"""The shrinker shared by the fuzzer and `pyc reduce`: delta debugging on an ONNX model.

A candidate is kept only when it is a valid model (onnx.checker, strict shape inference, static
dims; and onnxruntime runs it, where it ran the original) and the condition still holds.
Steps, repeated until nothing shrinks further (or the time budget ends):
1. cut the graph to the cone of one output (then drop outputs one at a time);
2. remove nodes, last first: bypass a node (its output replaced by one of its inputs of the same
   type), or cut it (its output becomes a new graph input of the same type);
3. dead nodes, unused inputs and initializers go after every change;
4. shrink the dims of graph inputs (to 1, or halved) where the model stays consistent.

Conditions (`parse_condition`): a PYC error code (`E009`, `PYC-E009`: the build fails with that
code), `mismatch` (PyC differs from onnxruntime beyond tolerance), `crash`, `hang`, or
`cmd:SHELL COMMAND` (exit status 0 means still interesting; the candidate path is given as {}
and in $PYC_REDUCE_MODEL).
"""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import helper

from ..errors import PycError

Condition = Callable[[onnx.ModelProto], bool]
# up to this many cone candidates are tried one by one, smallest first; more are bisected
LINEAR_CONES = 32


@dataclass
class ReduceStats:
    tried: int = 0
    kept: int = 0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- model surgery


def value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Every value's static type (inputs, initializers, intermediates, outputs)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {v.name: v.type for v in [*inferred.graph.input, *inferred.graph.value_info,
                                      *inferred.graph.output]}
    for tensor in model.graph.initializer:
        types[tensor.name] = helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
    return types


def same_type(a: onnx.TypeProto | None, b: onnx.TypeProto | None) -> bool:
    if a is None or b is None:
        return False
    ta, tb = a.tensor_type, b.tensor_type
    dims = [[d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim] for t in (ta, tb)]
    return ta.elem_type == tb.elem_type and dims[0] == dims[1] and -1 not in dims[0] and \
        ta.HasField("shape") and tb.HasField("shape")


def prune(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes whose outputs nobody uses, then unused graph inputs and initializers."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inputs = [v for v in graph.input if v.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def cone_size(model: onnx.ModelProto, name: str) -> int:
    """How many nodes compute `name` (what `as_only_output` would keep), without copying."""
    needed, count = {name}, 0
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output if o):
            count += 1
            needed.update(i for i in node.input if i)
    return count


def rename_uses(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new


def only_outputs(model: onnx.ModelProto, keep: list[int]) -> onnx.ModelProto:
    candidate = copy.deepcopy(model)
    outputs = [candidate.graph.output[i] for i in keep]
    del candidate.graph.output[:]
    candidate.graph.output.extend(outputs)
    return prune(candidate)


def as_only_output(model: onnx.ModelProto, name: str, value_type: onnx.TypeProto) -> onnx.ModelProto:
    candidate = copy.deepcopy(model)
    del candidate.graph.output[:]
    output = candidate.graph.output.add()
    output.name = name
    output.type.CopyFrom(value_type)
    return prune(candidate)


def bypass(model: onnx.ModelProto, index: int, replacement: str) -> onnx.ModelProto:
    """The model without node `index`; uses of its (single used) output read `replacement`."""
    candidate = copy.deepcopy(model)
    node = candidate.graph.node[index]
    for output in node.output:
        if output:
            rename_uses(candidate, output, replacement)
    del candidate.graph.node[index]
    return prune(candidate)


def cut(model: onnx.ModelProto, index: int, types: dict[str, onnx.TypeProto]) -> onnx.ModelProto:
    """Node `index` replaced by new graph inputs carrying its outputs' types."""
    candidate = copy.deepcopy(model)
    node = candidate.graph.node[index]
    for output in node.output:
        if output and output in types:
            value = candidate.graph.input.add()
            value.name = output
            value.type.CopyFrom(types[output])
    del candidate.graph.node[index]
    return prune(candidate)


def retyped(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graph output types re-derived by shape inference (after input dims changed)."""
    candidate = copy.deepcopy(model)
    for output in candidate.graph.output:
        output.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(candidate, strict_mode=True)
    types = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.input,
                                      *inferred.graph.output]}
    for output in candidate.graph.output:
        if output.name in types:
            output.type.CopyFrom(types[output.name])
    return candidate


def with_input_dim(model: onnx.ModelProto, name: str, axis: int, size: int) -> onnx.ModelProto:
    candidate = copy.deepcopy(model)
    for value in candidate.graph.input:
        if value.name == name:
            value.type.tensor_type.shape.dim[axis].dim_value = size
    return retyped(candidate)


def fix_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """Symbolic input dims made concrete (as `--input-shape` does for a build)."""
    if not shapes:
        return model
    candidate = copy.deepcopy(model)
    names = {v.name for v in candidate.graph.input}
    for name in shapes:
        if name not in names:
            raise PycError("E006", f"--input-shape names unknown input {name!r}",
                           hint=f"inputs: {', '.join(sorted(names))}")
    for value in candidate.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape
            dims.ClearField("dim")
            for d in shapes[value.name]:
                dims.dim.add().dim_value = int(d)
    return retyped(candidate)


def valid(model: onnx.ModelProto, static: bool = True) -> bool:
    """Checker-clean (strict shape inference) with every inferred dim a known size >= 0: ONNX's
    inference lets some inconsistencies through as negative dims (a window larger than its
    input), and a shrunk model must not turn into a different, invalid one. With `static`
    False, dims inference cannot know are allowed (an exported model computes its Reshape
    targets with Shape/Gather/Concat, which ONNX's inference does not evaluate)."""
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception:  # noqa: BLE001  (an inconsistent candidate is simply not kept)
        return False
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value < 0:
                return False
            if static and not dim.HasField("dim_value"):
                return False
    return bool(model.graph.output)


def runs_in_onnxruntime(model: onnx.ModelProto) -> bool:
    """onnxruntime loads and runs the model on a valid feed (catches what ONNX's shape
    inference lets through, e.g. Conv channels that do not match the groups)."""
    from .fuzz.oracle import ort_outputs
    from .fuzz.values import feeds_for

    try:
        ort_outputs(model.SerializeToString(), feeds_for(model, 0))
    except Exception:  # noqa: BLE001  (any failure: not a runnable model)
        return False
    return True


# ---------------------------------------------------------------- the search


class Shrinker:
    def __init__(self, condition: Condition, deadline: float, stats: ReduceStats,
                 require_ort: bool = False, static: bool = True) -> None:
        self.condition, self.deadline, self.stats = condition, deadline, stats
        self.require_ort = require_ort  # the original runs in onnxruntime: candidates must too
        self.static = static  # the original's dims are all inferred: candidates' must be too

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def holds(self, candidate: onnx.ModelProto) -> bool:
        if self.expired() or not valid(candidate, self.static):
            return False
        if self.require_ort and not runs_in_onnxruntime(candidate):
            return False
        self.stats.tried += 1
        return bool(self.condition(candidate))

    def first(self, candidates: Iterator[tuple[str, onnx.ModelProto]]) -> onnx.ModelProto | None:
        for what, candidate in candidates:
            if self.holds(candidate):
                self.stats.kept += 1
                self.stats.log.append(f"{what}: {len(candidate.graph.node)} nodes")
                return candidate
        return None

    def outputs(self, model: onnx.ModelProto) -> onnx.ModelProto:
        count = len(model.graph.output)
        if count > 1:
            found = self.first((f"cone of output {i}", only_outputs(model, [i])) for i in range(count))
            if found is not None:
                return found
        while len(model.graph.output) > 1 and not self.expired():
            n = len(model.graph.output)
            found = self.first((f"drop output {i}", only_outputs(model, [j for j in range(n) if j != i]))
                               for i in range(n))
            if found is None:
                break
            model = found
        return model

    def intermediates(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The cone of one intermediate value made the only output (smallest cones first)."""
        types = value_types(model)
        outputs = {o.name for o in model.graph.output}
        cones = []
        for node in model.graph.node:
            for name in node.output:
                if name and name in types and name not in outputs:
                    size = cone_size(model, name)
                    if size < len(model.graph.node):
                        cones.append((size, name))
        cones.sort()
        # candidates are made one at a time: a copy per value of a real model (90 MB of
        # weights, hundreds of values) would hold tens of GB at once
        if len(cones) > LINEAR_CONES:
            found = self.bisect_cones(model, [name for _, name in cones], types)
            if found is not None:
                return found
        found = self.first((f"cone of {name}", as_only_output(model, name, types[name]))
                           for _, name in cones[:LINEAR_CONES])
        return found if found is not None else model

    def bisect_cones(self, model: onnx.ModelProto, names: list[str],
                     types: dict[str, onnx.TypeProto]) -> onnx.ModelProto | None:
        """The smallest cone that holds, by bisection over cones sorted by size: a real model
        has hundreds of values and a check may take seconds (a build), and along a chain of
        layers a cone that holds is inside every larger one, which then holds too."""
        low, high, found = 0, len(names), None
        while low < high and not self.expired():
            middle = (low + high) // 2
            name = names[middle]
            candidate = as_only_output(model, name, types[name])
            if self.holds(candidate):
                self.stats.kept += 1
                self.stats.log.append(f"cone of {name}: {len(candidate.graph.node)} nodes")
                found, high = candidate, middle
            else:
                low = middle + 1
        return found

    def nodes(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
        changed = False
        index = len(model.graph.node) - 1
        while index >= 0 and not self.expired():
            found = self.first(self.node_candidates(model, index))
            if found is not None:
                model, changed = found, True
            index = min(index - 1, len(model.graph.node) - 1)
        return model, changed

    def node_candidates(self, model: onnx.ModelProto, index: int) -> Iterator[tuple[str, onnx.ModelProto]]:
        types = value_types(model)
        node = model.graph.node[index]
        used = [o for o in node.output if o]
        if len(used) == 1:
            for name in dict.fromkeys(i for i in node.input if i):
                if same_type(types.get(name), types.get(used[0])):
                    yield f"bypass {node.op_type} by {name}", bypass(model, index, name)
        if all(o in types for o in used):
            yield f"cut {node.op_type}", cut(model, index, types)

    def dims(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
        changed = False
        for value in list(model.graph.input):
            for axis, dim in enumerate(value.type.tensor_type.shape.dim):
                if self.expired():
                    return model, changed
                size = dim.dim_value
                targets = [s for s in dict.fromkeys((1, size // 2)) if 0 < s < size]
                found = self.first(self._dim_candidates(model, value.name, axis, targets))
                if found is not None:
                    model, changed = found, True
        return model, changed

    @staticmethod
    def _dim_candidates(model: onnx.ModelProto, name: str, axis: int,
                        targets: list[int]) -> Iterator[tuple[str, onnx.ModelProto]]:
        for size in targets:
            try:
                yield f"{name} dim {axis} -> {size}", with_input_dim(model, name, axis, size)
            except Exception:  # noqa: BLE001  (inconsistent shapes: not a candidate)
                continue


def reduce_model(model: onnx.ModelProto, condition: Condition, time_budget: float = 600.0
                 ) -> tuple[onnx.ModelProto, ReduceStats]:
    """The smallest model found (fewest nodes, then smallest inputs) for which `condition` holds.
    Raises PycError E050 when it does not hold for `model` itself."""
    start = time.monotonic()
    stats = ReduceStats()
    shrinker = Shrinker(condition, start + time_budget, stats, require_ort=runs_in_onnxruntime(model),
                        static=valid(model))
    try:
        if not condition(model):
            raise PycError("E050", "the condition does not hold for the original model",
                           hint="check the condition (and the model) by hand first")
        model = shrinker.intermediates(shrinker.outputs(prune(copy.deepcopy(model))))
        while not shrinker.expired():
            model, node_change = shrinker.nodes(model)
            model = shrinker.intermediates(shrinker.outputs(model))
            model, dim_change = shrinker.dims(model)
            if not (node_change or dim_change):
                break
    finally:
        getattr(condition, "close", lambda: None)()
    stats.seconds = time.monotonic() - start
    return model, stats


# ---------------------------------------------------------------- conditions


def load_for_reduce(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The model to shrink, its symbolic input dims fixed by `input_shapes`."""
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise PycError("E001", f"{path} does not exist", hint="check the path") from None
    except Exception as exc:  # noqa: BLE001  (any parse failure of a user file)
        raise PycError("E002", f"{path} is not a valid ONNX model: {exc}", where=str(path)) from None
    return fix_input_shapes(model, input_shapes)


def parse_condition(text: str, seed: int = 0, feed: str = "normal") -> Condition:
    text = text.strip()
    if text.startswith("cmd:"):
        return command_condition(text[4:])
    code = text.upper().removeprefix("PYC-")
    if len(code) == 4 and code.startswith("E") and code[1:].isdigit():
        from ..errors import ERROR_CODES

        if code not in ERROR_CODES:
            raise PycError("E050", f"unknown error code {text!r}", hint="see docs/errors.md")
        return error_code_condition(code)
    if text in ("mismatch", "crash", "hang"):
        return runner_condition(text, seed, feed, kind="auto" if text == "mismatch" else "")
    raise PycError("E050", f"--until {text!r} is not a condition",
                   hint="use an error code (E009), mismatch, crash, hang or cmd:SHELL COMMAND")


def _with_model_file(model: onnx.ModelProto, use: Callable[[Path], bool]) -> bool:
    with tempfile.TemporaryDirectory(prefix="pyc-reduce-") as tmp:
        path = Path(tmp) / "candidate.onnx"
        onnx.save(model, str(path))
        return use(path)


def error_code_condition(code: str) -> Condition:
    """The build fails with PYC-`code` (compile only, unless the code needs the C compiler)."""
    def check(path: Path) -> bool:
        from ..api import build, compile_graph

        try:
            if code in ("E020", "E021", "E090"):
                build(path, path.parent / "art")
            else:
                compile_graph(path)
        except PycError as exc:
            return exc.code == code
        except Exception:  # noqa: BLE001  (an internal error is code E090)
            return code == "E090"
        return False

    return lambda model: _with_model_file(model, check)


def command_condition(command: str) -> Condition:
    def check(path: Path) -> bool:
        line = command.replace("{}", shlex.quote(str(path)))
        env = {**os.environ, "PYC_REDUCE_MODEL": str(path)}
        try:
            return subprocess.run(line, shell=True, env=env, capture_output=True,
                                  timeout=300).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    return lambda model: _with_model_file(model, check)


def runner_condition(cls: str, seed: int, feed: str = "normal", modes: tuple[str, ...] | None = None,
                     kind: str = "") -> Condition:
    """PyC (built and run in a child process) gives outcome class `cls` on the `feed` feed;
    `kind` ('names' or 'values') pins a mismatch to the same kind of difference; 'auto' pins
    it to the kind the first (original) model shows, so a value mismatch cannot slip into a
    different defect (e.g. an output misnamed once a cut turns it into a graph input)."""
    return RunnerCondition(cls, seed, feed, modes, kind)


class RunnerCondition:
    """A condition checked by building and running in the fuzzer's child process; `close()`
    stops that process (reduce_model calls it when done)."""

    def __init__(self, cls: str, seed: int, feed: str, modes: tuple[str, ...] | None, kind: str) -> None:
        from .fuzz.runner import MODES, Runner

        self.cls, self.seed, self.feed, self.kind = cls, seed, feed, kind
        self.runner = Runner(modes or MODES)
        self.last_held: object | None = None  # the outcome on the last model the condition held for

    def __call__(self, model: onnx.ModelProto) -> bool:
        result = self.runner.check(model, self.seed, special=self.feed == "special")
        found = [o for o in result.outcomes if o.cls == self.cls and o.feed == self.feed]
        if self.kind == "auto" and found:
            kinds = {mismatch_kind(o.detail) for o in found}
            self.kind = "values" if "values" in kinds else "names"
        held = [o for o in found if not self.kind or self.kind == "auto"
                or mismatch_kind(o.detail) == self.kind]
        if held:
            self.last_held = held[0]
        return bool(held)

    def close(self) -> None:
        self.runner.close()


def mismatch_kind(detail: str) -> str:
    """'names' when the only difference is the output names/order, else 'values'."""
    problems = [p for p in detail.split(" [reference")[0].split("; ") if p]
    return "names" if problems and all(p.startswith("output names/order") for p in problems) else "values"


def condition_for_outcome(outcome: object, seed: int) -> Condition:
    """The condition that keeps a fuzz failure: same class, feed and mode (and kind)."""
    cls, feed, mode, code = (getattr(outcome, k) for k in ("cls", "feed", "mode", "code"))
    if cls in ("crash", "refused") and code:
        return error_code_condition(code)
    kind = mismatch_kind(getattr(outcome, "detail", "")) if cls == "mismatch" else ""
    return runner_condition(cls, seed, feed, (mode,), kind)


def replay_command(condition: str, path: Path, seed: int = 0, special: bool = False) -> str:
    """A ready-to-paste command that shows the condition on the reduced model."""
    if condition.startswith("cmd:"):
        line = condition[4:].replace("{}", shlex.quote(str(path)))
        return f"PYC_REDUCE_MODEL={shlex.quote(str(path))} {line}" if "$PYC_REDUCE_MODEL" in line else line
    if condition in ("mismatch", "crash", "hang"):
        return f"python -m pyc_cli.testing.fuzz --replay {shlex.quote(str(path))} --seed {seed}" + (
            " --special-values" if special else "")
    return f"pyc build {shlex.quote(str(path))} -o /tmp/pyc-repro.pyc"


def reduce_file(path: Path, condition_text: str, out_path: Path,
                input_shapes: dict[str, tuple[int, ...]], seed: int = 0, special: bool = False,
                time_budget: float = 600.0) -> tuple[str, str]:
    """`pyc reduce`: shrink the model at `path`, save it to `out_path`; (summary, repro command)."""
    model = load_for_reduce(path, input_shapes)
    condition = parse_condition(condition_text, seed, "special" if special else "normal")
    small, stats = reduce_model(model, condition, time_budget)
    onnx.save(small, str(out_path))
    summary = (f"reduced {len(model.graph.node)} -> {len(small.graph.node)} nodes ({stats.tried} "
               f"candidates, {stats.kept} kept, {stats.seconds:.0f} s): {out_path}")
    return summary, replay_command(condition_text, out_path, seed, special)
