"""Every ONNX node test PyC declares supported, built with symbolic dims (issue #15, point 1:
"every op's rule handles them or refuses with a PYC code naming the node").

Each input that is not bound as a constant (tests/conformance.py's rule) gets a named dim per
distinct size (`d3:1..6` for a 3: bounds 1..2*size, so the box holds shapes the case was not
written for), sizes 0 and 1 stay static; the case is imported and run through the front passes
(with the instance check). Outcomes: `ok`, a PYC code (a coded refusal; E009 "at d3=1: ..." means
the bounds include shapes the model rejects), or `CRASH` (anything else: a bug).

    python tests/symbolic_sweep.py [--ops Slice,Pad] [--report out.json]

Last run (docs/dynamic_shapes.md, "the sweep"): 848 ok, 287 E051, 40 E008 (unsupported element
types), 33 E009 (bounds include invalid shapes), 3 E010, 151 skipped (no dim to make symbolic),
0 crashes. Many E051
are the sweep's own doing (a head count made symbolic where real models have a number).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conformance  # noqa: E402

from pyc_cli import api  # noqa: E402
from pyc_cli.errors import PycError  # noqa: E402
from pyc_cli.ir.symbolic import parse_input_shapes  # noqa: E402


def symbolic_case(case: conformance.Case) -> tuple[bytes, list[str]] | None:
    """The case's model with constant-bound inputs and free dims, and its --input-shape
    texts; None where no dim can be made symbolic."""
    model = onnx.load_from_string(case.model)
    names = [v.name for v in model.graph.input
             if v.name not in {t.name for t in model.graph.initializer}]
    static = conformance.static_input_names(model)
    arrays = {n: conformance.as_array(a) for n, a in zip(names, case.data_sets[0][0])}
    bound = {n: a for n, a in arrays.items() if n in static}
    shapes = {n: tuple(a.shape) for n, a in arrays.items() if n not in static}
    return free_dims(conformance.bind_inputs(model, bound), shapes)


def free_dims(model_bytes: bytes, shapes: dict[str, tuple[int, ...]]) -> tuple[bytes, list[str]] | None:
    """The model with the dims of its inputs `shapes` (and of its outputs) free, and the
    --input-shape texts that bound them: a named dim per distinct size (`d3:1..6` for a 3),
    sizes 1 static; None where no dim can be made symbolic (or a size is 0)."""
    model = onnx.load_from_string(model_bytes)
    if any(0 in shape for shape in shapes.values()):
        return None
    specs, bounded = [], set()
    for name, shape in shapes.items():
        dims = []
        for size in shape:
            if size == 1:
                dims.append("1")
                continue
            dim = f"d{size}"
            dims.append(dim if dim in bounded else f"{dim}:1..{2 * size}")
            bounded.add(dim)
        specs.append(f"{name}=" + ",".join(dims))
    if not bounded:
        return None
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in shapes or value in model.graph.output:
            for k, dim in enumerate(value.type.tensor_type.shape.dim):
                dim.dim_param = f"p{k}"
    return model.SerializeToString(), specs


class NothingToTest(Exception):
    """A case the sweep has nothing to run for (no dim to make symbolic)."""


def declared_values(case: conformance.Case) -> dict[str, tuple[float, float]]:
    import onnx

    model = onnx.load_from_string(case.model)
    return conformance.declared_values(conformance.graph_input_names(model),  # type: ignore[no-any-return]
                                       conformance.static_input_names(model), case)


def outcome(case: conformance.Case, build: object, prefix: str,
            refusals: tuple[str, ...]) -> conformance.CaseResult:
    """Every data set of `case` run on what `build(path, shapes)` makes: `pass`, `fail` (wrong
    numbers, a crash), `refused` (a PycError whose code is one of `refusals`), `skipped`
    (NothingToTest); never raises."""
    from pyc_cli.errors import PycError

    start = time.perf_counter()
    result = conformance.CaseResult(case.name, list(case.ops), "pass")
    try:
        problem = conformance.run_data_sets(case, build, prefix)  # type: ignore[arg-type]
        if problem:
            result.outcome, result.detail = "fail", problem
    except NothingToTest as exc:
        result.outcome, result.detail = "skipped", str(exc)
    except PycError as exc:
        result.outcome = "refused" if exc.code in refusals else "fail"
        result.detail = str(exc)[:300]
    except Exception as exc:  # noqa: BLE001  (any crash is a failure of the case)
        tb = traceback.format_exc().strip().splitlines()
        result.outcome, result.detail = "fail", f"{type(exc).__name__}: {exc} [{tb[-3].strip()}]"[:400]
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def make_symbolic(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[object, ...]]:
    """The model at `path` rewritten with the dims of its inputs `shapes` free (free_dims), and
    the input shapes that bound them; NothingToTest where no dim can be made symbolic."""
    made = free_dims(path.read_bytes(), shapes)
    if made is None:
        raise NothingToTest("no dim to make symbolic")
    path.write_bytes(made[0])
    return parse_input_shapes(made[1])[0]  # type: ignore[no-any-return]


def run_case(case: conformance.Case, rejections: dict[str, str] | None = None) -> conformance.CaseResult:
    """`--run`: the case built for the CPU target with its free dims symbolic (free_dims) and
    run at the case's own shapes against its stored outputs; never raises."""
    import pyc_cli

    values = declared_values(case)

    def build(path: Path, shapes: dict[str, tuple[int, ...]]) -> object:
        symbolic = make_symbolic(path, shapes)
        out_dir = path.with_name(f"artifact-{path.stem}")
        pyc_cli.build(path, out_dir, input_shapes=symbolic, input_values=values or None)
        return pyc_cli.load(out_dir)

    return outcome(case, build, "pyc-symbolic-run-", (*conformance.REJECT_CODES, "E051", "E009"))


def run_sweep(ops: list[str] | None, jobs: int) -> int:
    """`--run` over `ops` (every declared op by default): counts, then every failure."""
    cases = conformance.collect_cases(ops)
    conformance.run_case = run_case  # the worker processes (forked) run this instead
    results = conformance.run_cases(cases, jobs, progress=False)
    counts = collections.Counter(r.outcome for r in results)
    print(dict(sorted(counts.items())))
    for r in results:
        if r.outcome == "fail":
            print(f"FAIL {r.name}: {r.detail[:300]}")
    return 1 if counts["fail"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", help="comma-separated ops (default: every declared op)")
    parser.add_argument("--report", type=Path, help="write every outcome as JSON")
    parser.add_argument("--run", action="store_true",
                        help="build each case for the CPU and run it at its shapes (outcomes: "
                             "pass, refused, skipped, fail)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for --run")
    args = parser.parse_args(argv)
    if args.run:
        return run_sweep(args.ops.split(",") if args.ops else None, args.jobs)
    counts: collections.Counter[str] = collections.Counter()
    outcomes: dict[str, str] = {}
    for case in conformance.collect_cases(args.ops.split(",") if args.ops else None):
        made = symbolic_case(case)
        if made is None:
            counts["skipped"] += 1
            continue
        model, specs = made
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(model)
            try:
                shapes, _ = parse_input_shapes(specs)
                api.compile_graph(path, "balanced", shapes, "cpu", stop_after="analyze_liveness")
                outcome = "ok"
            except PycError as exc:
                outcome = f"{exc.code}: {exc}"
            except Exception:  # a crash is what the sweep looks for
                outcome = "CRASH: " + traceback.format_exc(limit=3)
        counts[outcome.split(":")[0]] += 1
        outcomes[case.name] = outcome
    print(dict(sorted(counts.items())))
    for name, outcome in outcomes.items():
        if outcome.startswith("CRASH"):
            print(name, outcome)
    if args.report:
        args.report.write_text(json.dumps({"counts": counts, "cases": outcomes}, indent=1))
    return 1 if counts["CRASH"] else 0


if __name__ == "__main__":
    sys.exit(main())
