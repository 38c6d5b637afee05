"""PyC, onnxruntime and OpenVINO (f32) side by side on models of the size users deploy.

    python benchmarks/real_models.py [--models mlp,resnet50,minilm,ppocr_cls,ppocr_rec,ppocr_det,silero]
                                     [--repeat 30] [--rounds 3] [--threads 2]
                                     [--engines pyc,onnxruntime,openvino_f32]
                                     [--tune [--tuning-db PATH] [--tune-budget SECONDS]]
    python benchmarks/real_models.py --write-baseline benchmarks/baselines/cpu.json --runs 5 \
                                     --models mlp,ppocr_cls,silero --repeat 40 --rounds 3 --threads 1
    python benchmarks/real_models.py --check benchmarks/baselines/cpu.json      (make bench-check)

Models come from packages, weights random where the package has none: the 512-2048-2048-512 MLP
(generated here), ResNet-50 (onnx's light zoo, random weights via bench_models), MiniLM-L6 at
sequence 128 (tests/models/make_minilm.py), PP-OCR det/rec/cls (the rapidocr-onnxruntime wheel,
unpacked under /tmp/rapid/whl as .ci/run does), Silero VAD (the silero-vad package). Every engine
runs in this process on the same inputs; rounds interleave the engines; p50 is the median over
all timed runs. Every engine gets `--threads` (PyC through PYC_NUM_THREADS). Outputs are
checked against onnxruntime before timing (a mismatch is reported and not timed). Writes
benchmarks/results/real-models.json. The full benchmark (one process per engine, memory,
chart) is `bench.py --suite real`; this one is the quick in-process check.

The regression gate (issue #13, point 6): `--write-baseline` runs the chosen configuration
`--runs` times, each in a fresh process, and keeps per model the median PyC/onnxruntime p50
ratio and a noise band measured from those runs (1.5 x the largest relative deviation of a
run's ratio from the median); `--check` reruns that configuration and fails when a model's
ratio exceeds baseline x (1 + band) twice in a row (a first excess is re-measured once, so one
noisy sample does not fail the gate). A model whose files are absent here is skipped, said so.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_models import resnet50_logits  # noqa: E402
from memprobe import timed  # noqa: E402

import pyc_cli  # noqa: E402

RAPID = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models")


def _mlp(work: Path, rng: np.random.Generator, batch: int = 1
         ) -> tuple[Path, dict[str, tuple[int, ...]]]:
    sizes = (512, 2048, 2048, 512)
    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
        weight = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(n).astype(np.float32) * 0.1, f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        x = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 512])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = work / f"mlp_b{batch}.onnx"
    onnx.save(model, path)
    return path, {"x": (batch, 512)}


def _resnet50(work: Path, rng: np.random.Generator) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """The light zoo's ResNet-50 with random weights, its logits as the output: its final
    Softmax over random weights' logits is one-hot (every engine gives exactly 0 and 1, so an
    agreement check there proved nothing)."""
    path = work / "resnet50.onnx"
    resnet50_logits(work / "resnet50_light.onnx", path, batch=1)
    return path, {"gpu_0/data_0": (1, 3, 224, 224)}


def _minilm(work: Path, rng: np.random.Generator, batch: int = 1
            ) -> tuple[Path, dict[str, tuple[int, ...]]]:
    out = work / f"minilm_b{batch}"
    subprocess.run([sys.executable, str(ROOT / "tests" / "models" / "make_minilm.py"), str(out),
                    "--seq", "128", "--batch", str(batch)], check=True,
                   env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True)
    path = out / "minilm.onnx"
    model = onnx.load(path, load_external_data=False)
    return path, {i.name: (batch, 128) for i in model.graph.input}


def _rapid(name: str, shape: tuple[int, ...]):  # noqa: ANN202
    def prepare(work: Path, rng: np.random.Generator) -> tuple[Path, dict[str, tuple[int, ...]]]:
        return RAPID / name, {"x": shape}
    return prepare


SILERO_WHEEL = Path("/tmp/silero/whl/silero_vad/data")  # the wheel unpacked (.ci/run), no torch


def _silero(work: Path, rng: np.random.Generator) -> tuple[Path, dict[str, tuple[int, ...]]]:
    try:
        import silero_vad

        data = Path(silero_vad.__file__).parent / "data"
    except ImportError:
        data = SILERO_WHEEL
    model = onnx.load(data / "silero_vad_op18_ifless.onnx")
    # a deployment fixes the sample rate: 16 kHz as a constant (its If then folds)
    model.graph.initializer.append(numpy_helper.from_array(np.array(16000, np.int64), "sr"))
    kept = [v for v in model.graph.input if v.name != "sr"]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    path = work / "silero_vad_16k.onnx"
    onnx.save(model, path)
    return path, {"input": (1, 512), "state": (2, 1, 128)}


def unavailable(name: str) -> str | None:
    """Why a model's files cannot be had here (None: they can)."""
    if name.startswith("ppocr") and not RAPID.is_dir():
        return f"{RAPID} is absent (unpack the rapidocr-onnxruntime wheel there, as .ci/run does)"
    if name == "silero":
        try:
            import silero_vad  # noqa: F401
        except ImportError:
            if not SILERO_WHEEL.is_dir():
                return f"silero_vad is not installed and {SILERO_WHEEL} is absent"
    if name not in MODELS:
        return f"unknown model (known: {', '.join(MODELS)})"
    return None


MODELS = {"mlp": _mlp, "mlp_b64": functools.partial(_mlp, batch=64), "resnet50": _resnet50,
          "minilm": _minilm, "minilm_b8": functools.partial(_minilm, batch=8),
          "ppocr_cls": _rapid("ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192)),
          "ppocr_rec": _rapid("ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320)),
          "ppocr_det": _rapid("ch_PP-OCRv4_det_infer.onnx", (1, 3, 320, 320)),
          "silero": _silero}


def model_feeds(path: Path, shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        shape = shapes[value.name]
        if "int64" in value.type:
            feeds[value.name] = (np.ones(shape, np.int64) if "mask" in value.name
                                 else np.zeros(shape, np.int64) if "token_type" in value.name
                                 else rng.integers(0, 1000, shape, dtype=np.int64))
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds




def openvino_request(path: Path, threads: int, name: str):  # noqa: ANN202
    """An OpenVINO f32 infer request on the CPU, or None (said why) where it cannot be had."""
    try:
        import openvino as ov

        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
        return core.compile_model(str(path), "CPU").create_infer_request()
    except Exception as exc:  # noqa: BLE001  (OpenVINO is optional; say why it is absent)
        print(f"{name}: OpenVINO not measured: {type(exc).__name__}: {str(exc)[:120]}")
        return None


def measure(name: str, work: Path, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    path, shapes = MODELS[name](work, rng)
    feeds = model_feeds(path, shapes, rng)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    start = time.perf_counter()
    tuning = {"tune": True, "tuning_db": args.tuning_db, "tune_budget": args.tune_budget} \
        if args.tune else {}
    pyc_cli.build(path, work / f"{name}.pyc", input_shapes=shapes, force=True, **tuning)
    build_s = time.perf_counter() - start
    os.environ["PYC_NUM_THREADS"] = str(args.threads)  # read when the library creates the model
    with pyc_cli.load(work / f"{name}.pyc") as compiled:
        got = list(compiled.run(feeds).values())
        error = max(float(np.max(np.abs(g.astype(np.float64) - e))) if g.size else 0.0
                    for g, e in zip(got, expected))
        scale = max(float(np.max(np.abs(e))) if e.size else 0.0 for e in expected)
        ok = all(np.allclose(g, e, rtol=1e-3, atol=1e-3 * max(1.0, scale)) for g, e in zip(got, expected))
        # engine -> (number of runs -> milliseconds per run)
        timers = {"pyc": lambda n: compiled.time_runs(feeds, n),
                  "onnxruntime": lambda n: timed(lambda: session.run(None, feeds), n)}
        request = openvino_request(path, args.threads, name) if "openvino_f32" in args.engines else None
        if request is not None:
            timers["openvino_f32"] = lambda n: timed(lambda: request.infer(feeds), n)
        samples: dict[str, list[float]] = {k: [] for k in timers}
        for _ in range(args.rounds if ok else 0):
            for engine, timer in timers.items():
                samples[engine] += timer(args.repeat)
    p50 = {k: float(np.median(v)) for k, v in samples.items() if v}
    p95 = {k: float(np.percentile(v, 95)) for k, v in samples.items() if v}
    return {"model": name, "shapes": {k: list(v) for k, v in shapes.items()}, "matches_ort": ok,
            "max_abs_diff": error, "build_s": round(build_s, 1), "p50_ms": p50, "p95_ms": p95,
            "pyc_over_ort_p50": p50["pyc"] / p50["onnxruntime"] if ok else None,
            "pyc_over_openvino_p50":
                p50["pyc"] / p50["openvino_f32"] if ok and "openvino_f32" in p50 else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="pyc,onnxruntime,openvino_f32",
                        help="pyc and onnxruntime always run; openvino_f32 is optional")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real-models.json")
    parser.add_argument("--tune", action="store_true",
                        help="build PyC with `pyc build --tune` (build_s then includes tuning)")
    parser.add_argument("--tuning-db", type=Path, default=None,
                        help="with --tune: the tuning database (default: the user cache's)")
    parser.add_argument("--tune-budget", type=float, default=120.0)
    parser.add_argument("--write-baseline", type=Path, metavar="PATH",
                        help="measure --runs times (fresh processes) and write a baseline")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", type=Path, metavar="BASELINE",
                        help="rerun the baseline's configuration; exit 1 on a regression")
    args = parser.parse_args(argv)
    if args.check is not None:
        from regression_gate import check

        return check(args.check, unavailable)
    if args.write_baseline is not None:
        from regression_gate import write_baseline

        return write_baseline(args.write_baseline, args.models.split(","), args.repeat,
                              args.rounds, args.threads, args.runs, unavailable)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            try:
                result = measure(name, Path(tmp), args)
            except Exception as exc:  # noqa: BLE001  (one model's failure is reported, not fatal)
                result = {"model": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            results.append(result)
            print(json.dumps(result))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "onnxruntime": ort.__version__, "threads_ort_openvino": args.threads,
               "threads_pyc": args.threads, "repeat": args.repeat, "rounds": args.rounds,
               "pyc_tuned": args.tune}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
