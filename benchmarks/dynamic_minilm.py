"""Issue #15's target on MiniLM-L6 (random weights, dynamic batch and seq): one symbolic PyC build
run at several shapes against onnxruntime (max errors), and per-shape p50 latency of the symbolic
build vs onnxruntime, plus a static PyC build at its own shape ("the generic plan within 1.3x of a
static build at the same shape"). One thread each; the engines alternate, round after round, so
a noisy machine slows each alike; medians and ratios are reported.

    python tests/models/make_dynamic_bert.py /tmp/minilm.onnx --minilm
    pyc build /tmp/minilm.onnx -o /tmp/minilm_sym --threads 1 \\
        --input-shape input_ids=batch:1..8,seq:1..512 \\
        --input-shape attention_mask=batch,seq --input-shape token_type_ids=batch,seq
    pyc build /tmp/minilm.onnx -o /tmp/minilm_1x128 --threads 1 --input-shape input_ids=1,128 \\
        --input-shape attention_mask=1,128 --input-shape token_type_ids=1,128
    python benchmarks/dynamic_minilm.py /tmp/minilm.onnx /tmp/minilm_sym \\
        --static 1x128=/tmp/minilm_1x128
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.models.make_dynamic_bert import MINILM, sample_inputs  # noqa: E402

SHAPES = ((1, 16), (1, 128), (8, 512), (3, 77))



def _shape(text: str) -> tuple[int, int]:
    batch, seq = text.lower().split("x")
    return int(batch), int(seq)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("symbolic", type=Path, help="the artifact built with batch and seq bounded")
    parser.add_argument("--static", action="append", default=[], metavar="BxS=ARTIFACT",
                        help="a static build at shape BxS, timed at that shape (repeatable)")
    parser.add_argument("--shapes", default=",".join(f"{b}x{s}" for b, s in SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per engine per round")
    args = parser.parse_args(argv)
    shapes = [_shape(t) for t in args.shapes.split(",")]
    statics = {_shape(k): Path(v) for k, v in (s.split("=", 1) for s in args.static)}
    session = ort_session(args.model)
    rng = np.random.default_rng(0)
    opened = [pyc_cli.load(args.symbolic)] + [pyc_cli.load(p) for p in statics.values()]
    symbolic, static_models = opened[0], dict(zip(statics, opened[1:]))
    print("| batch x seq | max abs err | max rel err (vs max abs) | PyC symbolic p50 ms | "
          "PyC static p50 ms | onnxruntime p50 ms | symbolic / static | symbolic / ort |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for batch, seq in shapes:
            feeds = sample_inputs(rng, MINILM["vocab_size"], batch, seq)
            want = session.run(None, feeds)[0]
            got = symbolic.run(feeds)["last_hidden_state"]
            err = float(np.max(np.abs(got - want)))
            rel = err / float(np.max(np.abs(want)))
            times: dict[str, list[float]] = {"sym": [], "static": [], "ort": []}
            static = static_models.get((batch, seq))
            if static is not None:
                serr = float(np.max(np.abs(static.run(feeds)["last_hidden_state"] - want)))
                print(f"<!-- static {batch}x{seq}: max abs err {serr:.2e} -->", flush=True)
            for _ in range(args.rounds):  # alternate: noise lands on every engine alike
                times["sym"] += symbolic.time_runs(feeds, args.runs)
                if static is not None:
                    times["static"] += static.time_runs(feeds, args.runs)
                times["ort"] += ort_times(session, feeds, args.runs)
            p50 = {k: statistics.median(v) for k, v in times.items() if v}
            static_text = f"{p50['static']:.2f}" if "static" in p50 else "-"
            ratio = f"{p50['sym'] / p50['static']:.2f}x" if "static" in p50 else "-"
            print(f"| {batch} x {seq} | {err:.2e} | {rel:.2e} | {p50['sym']:.2f} | {static_text} "
                  f"| {p50['ort']:.2f} | {ratio} | {p50['sym'] / p50['ort']:.2f}x |", flush=True)
    finally:
        for model in opened:
            model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
