"""Issue #15: the arena a model with symbolic dims uses at each shape, by build mode (run-time
offsets in balanced / memory_first, fixed upper-bound offsets in latency_first), with each run
checked against onnxruntime. For every artifact and shape it reports the arena the plan needs
at that shape (NAME_arena_offsets of the library; the fixed plan's arena for latency_first),
the bytes the context's run actually used (NAME_context_arena_used), the max abs error against
onnxruntime, and the growth of the process's resident memory over the first run at that shape
(a fresh process per artifact and shape, after one warm-up run at the lower bounds).

    python tests/models/make_dynamic_bert.py /tmp/minilm.onnx --minilm
    for mode in memory_first balanced latency_first; do
      pyc build /tmp/minilm.onnx -o /tmp/minilm_$mode --mode $mode --threads 1 \\
        --input-shape input_ids=batch:1..8,seq:1..512 \\
        --input-shape attention_mask=batch,seq --input-shape token_type_ids=batch,seq
    done
    python benchmarks/runtime_arena.py /tmp/minilm.onnx /tmp/minilm_memory_first \\
        /tmp/minilm_balanced /tmp/minilm_latency_first --shapes 1x1,1x128,3x77,8x512
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.models.make_dynamic_bert import MINILM, sample_inputs  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def _measure(model_path: Path, artifact: Path, batch: int, seq: int, vocab: int) -> dict[str, Any]:
    """One artifact at one shape, in this (fresh) process."""
    import onnxruntime as ort

    import pyc_cli

    manifest = json.loads((artifact / "manifest.json").read_text())
    plan = json.loads((artifact / "memory_plan.json").read_text())
    library = ctypes.CDLL(str(artifact / manifest["library"]))
    prefix = manifest["symbol_prefix"]
    dims = {d["name"]: d for d in manifest["dims"]}
    env = {"batch": batch, "seq": seq}
    need = manifest["arena_bytes"]
    runtime = plan.get("runtime_offsets")
    if runtime is not None:
        offsets_fn = getattr(library, f"{prefix}_arena_offsets")
        offsets_fn.restype = ctypes.c_int64
        values = (ctypes.c_int64 * len(dims))(*[env[name] for name in sorted(dims)])
        need = offsets_fn(values, (ctypes.c_int64 * len(runtime["blocks"]))())
    rng = np.random.default_rng(0)
    feeds = sample_inputs(rng, vocab, batch, seq)
    low = {name: d["lo"] for name, d in dims.items()}
    with pyc_cli.load(artifact) as model:
        model.run(sample_inputs(rng, vocab, low["batch"], low["seq"]))  # warm-up at the lower bounds
        before = _rss()
        got = model.run(feeds)
        grown = _rss() - before
    used = None
    if runtime is not None:  # the same run through the C ABI, reading the context's arena use
        used = _c_run_used(library, prefix, feeds, manifest)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)[0]
    name = manifest["outputs"][0]["name"]
    return {"mode": manifest["mode"], "shape": f"{batch}x{seq}", "arena_bytes": need,
            "context_arena_used": used, "upper_bound_arena": manifest["arena_bytes"],
            "fixed_plan_arena": runtime["fixed_arena_bytes"] if runtime else manifest["arena_bytes"],
            "rss_growth": grown,
            "max_abs_err": float(np.max(np.abs(got[name] - expected))),
            "max_abs_out": float(np.max(np.abs(expected)))}


def _c_run_used(library: ctypes.CDLL, prefix: str, feeds: dict[str, np.ndarray],
                manifest: dict[str, Any]) -> int:
    """NAME_context_run_shaped once on a fresh context, then NAME_context_arena_used."""
    def fn(suffix: str, restype: Any) -> Any:
        f = getattr(library, f"{prefix}_{suffix}")
        f.restype = restype
        return f
    model, context = ctypes.c_void_p(), ctypes.c_void_p()
    assert fn("create", ctypes.c_int)(str(Path(library._name).parent / "weights.bin").encode(),
                                      ctypes.byref(model)) == 0
    assert fn("context_create", ctypes.c_int)(model, ctypes.byref(context)) == 0
    arrays = [np.ascontiguousarray(feeds[i["name"]]) for i in manifest["inputs"]]
    shapes = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    shape_ptrs = (ctypes.POINTER(ctypes.c_int64) * len(arrays))(
        *[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64)) for s in shapes])
    inputs = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    outs = [np.empty(int(np.prod(o["shape"])), np.float32) for o in manifest["outputs"]]
    outputs = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
    status = fn("context_run_shaped", ctypes.c_int)(context, shape_ptrs, inputs, outputs)
    assert status == 0, status
    used = int(fn("context_arena_used", ctypes.c_int64)(context))
    fn("context_destroy", None)(context)
    fn("destroy", None)(model)
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("artifacts", type=Path, nargs="+")
    parser.add_argument("--shapes", default="1x1,1x128,3x77,8x512")
    parser.add_argument("--vocab", type=int, default=MINILM["vocab_size"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one measurement in a fresh process
        batch, seq = (int(v) for v in args.child.split("x"))
        print(json.dumps(_measure(args.model, args.artifacts[0], batch, seq, args.vocab)))
        return 0
    print("| mode | batch x seq | arena at this shape | used by the run | fixed upper-bound plan "
          "| RSS growth of the run | max abs err vs ORT / max abs out |")
    print("|---|---|---|---|---|---|---|")
    for artifact in args.artifacts:
        for shape in args.shapes.split(","):
            ran = subprocess.run([sys.executable, __file__, str(args.model), str(artifact),
                                  "--child", shape, "--vocab", str(args.vocab)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(ran.stdout.strip().splitlines()[-1])
            used = "-" if r["context_arena_used"] is None else f"{r['context_arena_used'] / 2**20:.3f} MiB"
            print(f"| {r['mode']} | {r['shape']} | {r['arena_bytes'] / 2**20:.3f} MiB | {used} | "
                  f"{r['fixed_plan_arena'] / 2**20:.1f} MiB | {r['rss_growth'] / 2**20:.1f} MiB | "
                  f"{r['max_abs_err']:.2e} / {r['max_abs_out']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
