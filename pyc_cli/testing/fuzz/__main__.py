"""`python -m pyc_cli.testing.fuzz`: run a campaign, or replay one graph / saved failure."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import onnx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyc_cli.testing.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--failures-dir", type=Path, default=None,
                        help="save failing models here (default: <out dir>/fuzz-failures)")
    parser.add_argument("--max-graphs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="graphs checked in parallel")
    parser.add_argument("--ops", default=None, help="comma-separated ops to restrict generation to")
    parser.add_argument("--no-shrink", action="store_true", help="save failures without shrinking")
    parser.add_argument("--special-values", action="store_true",
                        help="with --replay MODEL.onnx: also check the special-values feed")
    parser.add_argument("--graph-seed", type=int, default=None, help="replay one generated graph")
    parser.add_argument("--replay", type=Path, default=None,
                        help="replay a saved failure directory, or check any .onnx (feeds from --seed)")
    args = parser.parse_args(argv)
    if args.graph_seed is not None or args.replay is not None:
        only = args.ops.split(",") if args.ops else None
        return replay(args.graph_seed, args.replay, args.seed, args.special_values, only)
    from .campaign import report, run_campaign

    failures_dir = args.failures_dir or (args.out.parent / "fuzz-failures" if args.out else None)
    only = args.ops.split(",") if args.ops else None
    stats, duration = run_campaign(args.seconds, args.seed, failures_dir, not args.no_shrink,
                                   args.max_graphs, only, jobs=args.jobs)
    command = "python -m pyc_cli.testing.fuzz " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    data = report(stats, duration, command, args.seed, args.seconds, args.jobs)
    text = json.dumps(data, indent=2, sort_keys=False)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    summary = {k: data[k] for k in ("graphs", "builds", "graphs_per_hour", "counts", "special_values")}
    print(json.dumps(summary, indent=1))
    for failure in data["failures"]:
        print(f"{failure['class']:9} {failure['feed']:7} {','.join(failure['modes'])}: "
              f"{failure['known_defect'] or 'NEW'}: {failure['replay']}")
    return 0


def replay(gseed: int | None, path: Path | None, seed: int, special_values: bool = False,
           only: list[str] | None = None) -> int:
    """Regenerate (or load) the graph, run every mode, print each outcome; exit 1 on a failure."""
    from .campaign import wants_special
    from .generate import FuzzCase, generate
    from .runner import FAILING, Runner

    if path is not None and path.is_dir():
        case_info = json.loads((path / "case.json").read_text())
        gseed = int(case_info["graph_seed"])
        case = FuzzCase(gseed, onnx.load(str(path / "model.onnx")), 0)
        special = case_info["feed"] == "special" or wants_special(gseed)
    elif path is not None:
        case, special = FuzzCase(seed, onnx.load(str(path)), 0), special_values
    else:
        case = generate(int(gseed), only)
        special = wants_special(case.seed)
    print(onnx.helper.printable_graph(case.model.graph))
    with Runner() as runner:
        result = runner.check(case.model, case.seed, special)
    for outcome in result.outcomes:
        print(f"{outcome.mode:14} {outcome.feed:8} {outcome.cls:10} {outcome.code} {outcome.detail[:600]}")
    return int(any(o.cls in FAILING for o in result.outcomes))


if __name__ == "__main__":
    sys.exit(main())
