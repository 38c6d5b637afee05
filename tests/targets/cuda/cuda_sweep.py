"""The ONNX backend node tests of chosen ops through the CUDA target, run emulated on the CPU
(emulate_cuda.h, test_cuda_emulated.Emulated) and compared with the cases' stored outputs as
tests/conformance.py compares them (the case's rtol / atol; integer outputs exactly).

    PYTHONPATH=$PWD python tests/targets/cuda/cuda_sweep.py --ops Pad,LSTM [--jobs 2] [--report F]
        [--symbolic]

Outcomes per case: `pass`; `refused` (a reason-coded PycError at build time: the CUDA target
has no kernel for a node, or the op's unit rejects the case on every target; a size read
from an input's values at entry, which the CUDA target does not read yet: PYC-E051); `fail`
(wrong numbers, a crash, any other
error). Shape-like inputs are bound as initializers, and the values of the integer inputs fed
declared, as conformance.py does. Without an
argument: the ops of the generic kernel (targets/cuda/kernels.py: GENERIC_BODIES), the ops
that decompose before kernel selection (Split, Tile, DepthToSpace, ...) and NonZero."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent
sys.path[:0] = [str(TESTS), str(HERE)]

import conformance  # noqa: E402
from conformance import Case, CaseResult  # noqa: E402
from symbolic_sweep import declared_values, outcome  # noqa: E402

# ops without a CUDA kernel of their own that decompose into others before kernel selection
DECOMPOSED = ("BatchNormalization", "DepthToSpace", "SpaceToDepth", "Einsum", "Gemm",
              "GlobalAveragePool", "GlobalMaxPool", "OneHot", "Split", "Tile", "Trilu")
# ... and ops whose output size is computed at run time (the generic kernel over the CPU's
# run-time kernel, the dims in device memory: docs/cuda.md, Sizes known at run time)
RUN_TIME_SIZES = ("NonZero",)


def default_ops() -> list[str]:
    from pyc_cli.targets.cuda.kernels import GENERIC_BODIES

    return sorted(set(GENERIC_BODIES) | set(DECOMPOSED) | set(RUN_TIME_SIZES))


def run_case(case: Case, rejections: dict[str, str] | None = None) -> CaseResult:
    """Build `case` for the CUDA target and run every data set emulated; never raises."""
    from test_cuda_emulated import Emulated

    # the values of the integer inputs fed, declared as conformance.py declares them (value dims
    # and sizes computed from them: the CUDA target's run-time dims)
    values = declared_values(case)

    def build(path: Path, shapes: dict[str, tuple[int, ...]]) -> Emulated:
        return Emulated(path, path.parent, shapes, input_values=values or None)

    return outcome(case, build, "pyc-cuda-sweep-", conformance.REJECT_CODES)


def run_symbolic_case(case: Case, rejections: dict[str, str] | None = None) -> CaseResult:
    """`--symbolic`: the case's free input dims made symbolic as tests/symbolic_sweep.py makes
    them (a named dim per size, bounds 1..2 x size), built once per data set's bound inputs for
    the CUDA target (its kernels over run-time sizes) and run emulated at the case's own
    shapes; outcome `skipped` where no dim can be made symbolic. Never raises."""
    from symbolic_sweep import make_symbolic
    from test_cuda_emulated import Emulated

    values = declared_values(case)

    def build(path: Path, shapes: dict[str, tuple[int, ...]]) -> Emulated:
        return Emulated(path, path.parent, make_symbolic(path, shapes),  # type: ignore[arg-type]
                        input_values=values or None)

    return outcome(case, build, "pyc-cuda-symbolic-", (*conformance.REJECT_CODES, "E051", "E009"))


OUTCOMES = ("pass", "refused", "skipped", "fail")


def sweep(ops: list[str], jobs: int, progress: bool = False,
          symbolic: bool = False) -> dict[str, object]:
    cases = conformance.collect_cases(ops)
    # the worker processes (forked) run this instead
    conformance.run_case = run_symbolic_case if symbolic else run_case
    conformance.load_rejections = dict  # type: ignore[assignment]
    results = conformance.run_cases(cases, jobs, progress=progress)
    per_op = {}
    for op in sorted(ops):
        mine = [r for r in results if op in r.ops]
        per_op[op] = {k: sum(r.outcome == k for r in mine) for k in OUTCOMES}
    return {"cases": len(results),
            **{k: sum(r.outcome == k for r in results) for k in OUTCOMES},
            "ops": per_op,
            "not_passed": {r.name: f"{r.outcome}: {r.detail}" for r in results if r.outcome != "pass"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", help="comma-separated ops (default: see the module docstring)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--report", type=Path, help="write the JSON summary here")
    parser.add_argument("--symbolic", action="store_true",
                        help="free input dims made symbolic (the kernels over run-time sizes)")
    args = parser.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else default_ops()
    summary = sweep(ops, args.jobs, progress=True, symbolic=args.symbolic)
    if args.report:
        args.report.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    print(f"{'op':24} pass refused skipped fail")
    for op, row in summary["ops"].items():  # type: ignore[attr-defined]
        print(f"{op:24} {row['pass']:4} {row['refused']:7} {row['skipped']:7} {row['fail']:4}")
    print(f"cases {summary['cases']}: " + ", ".join(f"{k} {summary[k]}" for k in OUTCOMES))
    return 0 if not summary["fail"] else 1


if __name__ == "__main__":
    sys.exit(main())
