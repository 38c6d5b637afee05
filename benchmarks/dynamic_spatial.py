"""Issue #15 on images of many sizes (PP-OCR rec crops of many widths): one symbolic PyC build
run at several input shapes against onnxruntime (max errors), and per shape the p50 latency of
the symbolic build, a static PyC build at that shape, and onnxruntime. One thread each
(build with --threads 1); the engines alternate, round after round, so a noisy machine slows
each alike; medians and ratios are reported.

    M=/tmp/rapid/whl/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx
    pyc build $M -o /tmp/rec_sym --threads 1 --input-shape x=1,3,48,w:16..960
    pyc build $M -o /tmp/rec_320 --threads 1 --input-shape x=1,3,48,320
    python benchmarks/dynamic_spatial.py $M /tmp/rec_sym --static 1x3x48x320=/tmp/rec_320
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

import pyc_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_single import ort_session, ort_times  # noqa: E402


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("symbolic", type=Path, help="the symbolic PyC artifact")
    parser.add_argument("--static", action="append", default=[], metavar="SHAPE=ARTIFACT",
                        help="a static PyC build at SHAPE (e.g. 1x3x48x320=/tmp/rec_320)")
    parser.add_argument("--input", default="x")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    session = ort_session(args.model)
    rng = np.random.default_rng(0)
    print("| shape | max abs err vs ORT | max abs output | symbolic p50 ms | static p50 ms "
          "| ORT p50 ms | symbolic / static | symbolic / ORT |")
    print("|---|---|---|---|---|---|---|---|")
    with pyc_cli.load(args.symbolic) as generic:
        for item in args.static:
            text, path = item.split("=", 1)
            feeds = {args.input: rng.standard_normal(_shape(text)).astype(np.float32)}
            expected = session.run(None, feeds)[0]
            got = next(iter(generic.run(feeds).values()))
            err = float(np.max(np.abs(got - expected)))
            times: dict[str, list[float]] = {"sym": [], "static": [], "ort": []}
            with pyc_cli.load(Path(path)) as static:
                for _ in range(args.rounds):
                    times["sym"] += generic.time_runs(feeds, args.runs)
                    times["static"] += static.time_runs(feeds, args.runs)
                    times["ort"] += ort_times(session, feeds, args.runs)
            p50 = {k: statistics.median(v) for k, v in times.items()}
            print(f"| {text} | {err:.2e} | {float(np.max(np.abs(expected))):.3g} "
                  f"| {p50['sym']:.2f} | {p50['static']:.2f} | {p50['ort']:.2f} "
                  f"| {p50['sym'] / p50['static']:.2f}x | {p50['sym'] / p50['ort']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
