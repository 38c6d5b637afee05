"""The CUDA target's GPU smoke run (benchmarks/cuda_smoke.sh sets up the machine and calls this).

1. Records the machine: GPU name, driver and NVRTC versions, Python and package versions.
2. Runs `pytest tests/targets/cuda` but the CPU emulation (every CUDA kernel and the reference
   models against onnxruntime on the GPU; NVRTC compilation; the build checks) and records
   passed / failed / skipped per file; a skipped GPU test fails the run (nothing was checked).
3. Builds and times, at batch 1, the MLP 512-2048-2048-512 and the MiniLM-L6-shaped encoder
   (sequence 128, tests/models/make_encoder.py; fp32, and fp16 with the tensor-core GEMM), each
   first checked against onnxruntime (fp32: rtol 1e-3, atol 1e-4; fp16: 5e-3 of max |output|):
   `wall_ms` is a whole run as a user sees it (inputs in, kernels, outputs out, synchronised),
   `kernels_ms` the kernel launches alone between two CUDA events; both with runs replayed as
   one CUDA graph (the default) and, under `stream`, launched call by call (PYC_CUDA_GRAPHS=0),
   whose outputs must be bitwise equal.
4. Writes OUT/cuda_smoke.json; exits 1 if a test or a check failed.

    python benchmarks/cuda_smoke.py --out OUT [--repeat 200] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))


def machine() -> dict[str, object]:
    import importlib.metadata as metadata

    record: dict[str, object] = {"python": platform.python_version(), "packages": {}}
    for name in ("numpy", "onnx", "onnxruntime", "cuda-bindings", "cuda-pathfinder", "pytest",
                 "jinja2", "torch"):
        try:
            record["packages"][name] = metadata.version(name)  # type: ignore[index]
        except metadata.PackageNotFoundError:
            record["packages"][name] = None  # type: ignore[index]
    try:
        from pyc_cli.runtime.cuda import init_driver
        from pyc_cli.targets.cuda import toolchain

        driver = init_driver("smoke")
        device = driver("cuDeviceGet", 0)
        version = driver("cuDriverGetVersion")
        record["device"] = driver("cuDeviceGetName", 256, device).split(b"\0")[0].decode()
        record["driver_cuda"] = f"{version // 1000}.{version % 1000 // 10}"
        record["nvrtc"] = toolchain.version()
    except Exception as error:  # noqa: BLE001 (recorded, and the run goes on to say more)
        record["device_error"] = str(error)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, check=False)
        record["nvidia_smi"] = smi.stdout.strip()
    except OSError:
        record["nvidia_smi"] = None
    return record


def run_tests(out: Path) -> dict[str, object]:
    log = out / "cuda_tests.log"
    started = time.perf_counter()
    # the CPU emulation of the kernels runs in CI; device time goes to what needs the GPU
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "targets" / "cuda"), f"--junitxml={out / 'cuda_tests.xml'}",
               f"--ignore={ROOT / 'tests' / 'targets' / 'cuda' / 'test_cuda_emulated.py'}",
               # the 16-bit activations' emulated kernels too (test_cuda_gpu.py runs them here)
               f"--deselect={ROOT / 'tests' / 'targets' / 'cuda' / 'test_cuda_half.py'}::test_emulated"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    log.write_text(result.stdout + result.stderr)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    print(result.stdout[-6000:], result.stderr[-2000:], sep="\n")
    return {"exit_code": result.returncode, "summary": summary, "by_file": by_file(out / "cuda_tests.xml"),
            "seconds": round(time.perf_counter() - started, 1), "log": log.name}


def by_file(junit: Path) -> dict[str, dict[str, int]]:
    """passed / failed / skipped per test file, from pytest's JUnit XML."""
    import xml.etree.ElementTree as ElementTree

    counts: dict[str, dict[str, int]] = {}
    if not junit.is_file():
        return counts
    for case in ElementTree.parse(junit).iter("testcase"):
        name = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")),
                       "passed")
        entry = counts.setdefault(name, {"passed": 0, "failure": 0, "error": 0, "skipped": 0})
        entry[outcome] += 1
    return counts


def mlp_model(work: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """real_models.py's MLP 512-2048-2048-512 (MatMul + Add + Relu), at batch 1."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_models import _mlp

    rng = np.random.default_rng(0)
    path, shapes = _mlp(work, rng)
    return path, {"x": rng.standard_normal(shapes["x"]).astype(np.float32)}


def encoder_model(work: Path) -> tuple[Path, dict[str, np.ndarray]]:
    import onnx
    from make_encoder import encoder_feeds, make_encoder

    path = work / "encoder.onnx"
    onnx.save(make_encoder(batch=1, seq=128), path)
    return path, encoder_feeds(np.random.default_rng(1), 1, 128, 30522)


# max |ours - onnxruntime| / max |onnxruntime| at a reduced precision (mma_precision.py)
REDUCED_RTOL = {"tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


def agrees(ours: np.ndarray, expected: np.ndarray, precision: str) -> bool:
    if precision == "fp32":
        return bool(np.allclose(ours, expected, rtol=1e-3, atol=1e-4))
    scale = float(np.max(np.abs(expected)))
    return bool(np.max(np.abs(ours - expected)) <= REDUCED_RTOL[precision] * scale)


def measure(name: str, make, work: Path, repeat: int, precision: str = "fp32") -> dict[str, object]:  # noqa: ANN001
    import onnxruntime as ort

    import pyc_cli

    path, feeds = make(work)
    started = time.perf_counter()
    built = pyc_cli.build(path, work / f"{name}.pyc", target="cuda", arch="sm_90",
                          precision=precision)
    build_s = time.perf_counter() - started
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    paths = {mode: run_path(built.artifact, feeds, expected, repeat, mode, precision)
             for mode in ("cuda_graph", "cuda_stream")}
    graph = paths["cuda_graph"]
    ort_times = []
    for _ in range(min(repeat, 50)):
        begin = time.perf_counter()
        session.run(None, feeds)
        ort_times.append((time.perf_counter() - begin) * 1000)
    return {"device": graph["device"], "build_s": round(build_s, 2),
            "kernels": len(built.graph.nodes), "arena_bytes": built.plan.arena_bytes,
            # intermediates stored in 16 bits (fp16 / bf16: targets/cuda/storage.py)
            "activations_16bit": sum(t.dtype.value in ("f16", "bf16") for t in built.graph.types.values()),
            "matches_onnxruntime": all(p["matches_onnxruntime"] for p in paths.values()),
            "graph_equals_stream": all(
                np.array_equal(graph["outputs"][k], paths["cuda_stream"]["outputs"][k])
                for k in expected),
            "max_abs_error": graph["max_abs_error"], "precision": precision,
            "tolerance": ({"rtol": 1e-3, "atol": 1e-4} if precision == "fp32"
                          else {"of_max_abs_output": REDUCED_RTOL[precision]}),
            "wall_ms": graph["wall_ms"], "kernels_ms": graph["kernels_ms"],
            "stream": {k: paths["cuda_stream"][k] for k in ("wall_ms", "kernels_ms", "stats")},
            "stats": graph["stats"],
            "onnxruntime_cpu_p50_ms": float(np.percentile(ort_times, 50))}


def run_path(artifact: Path, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray],
             repeat: int, execution: str, precision: str) -> dict[str, object]:
    """One load with runs replayed as a CUDA graph (cuda_graph) or launched call by call
    (cuda_stream, PYC_CUDA_GRAPHS=0): checked against onnxruntime (poisoned first), timed."""
    import os

    import pyc_cli
    from pyc_cli.runtime.timing import RunPlan, latency_stats

    os.environ["PYC_CUDA_GRAPHS"] = "1" if execution == "cuda_graph" else "0"
    try:
        with pyc_cli.load(artifact) as model:
            model.poison()
            ours = model.run(feeds)
            wall = latency_stats(model.time_runs(feeds, RunPlan(warmup=10, repeat=repeat)))
            kernels = latency_stats(model.time_kernels(feeds, repeat))
            stats = model.stats.to_json()
            device = model.device_name
    finally:
        os.environ.pop("PYC_CUDA_GRAPHS", None)
    assert stats["execution"] == execution, stats
    return {"device": device, "outputs": ours, "wall_ms": wall, "kernels_ms": kernels,
            "stats": stats,
            "max_abs_error": {k: float(np.max(np.abs(ours[k] - v))) for k, v in expected.items()},
            "matches_onnxruntime": all(agrees(ours[k], v, precision) for k, v in expected.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"command": "bash benchmarks/cuda_smoke.sh", "machine": machine()}
    print(json.dumps(result["machine"], indent=1))
    ok = True
    if not args.skip_tests:
        result["tests"] = tests = run_tests(args.out)
        gpu = tests["by_file"].get("test_cuda_gpu", {})  # type: ignore[union-attr]
        # on the GPU machine a skipped GPU test is a failure: nothing was checked there
        ok = tests["exit_code"] == 0 and gpu.get("passed", 0) > 0 and gpu.get("skipped", 0) == 0
    timings: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as work:
        for name, make, precision in (("mlp_512_2048_2048_512_b1", mlp_model, "fp32"),
                                      ("minilm_shaped_b1_s128", encoder_model, "fp32"),
                                      ("minilm_shaped_b1_s128_fp16", encoder_model, "fp16")):
            try:
                timings[name] = measure(name, make, Path(work), args.repeat, precision)
                ok = ok and bool(timings[name]["matches_onnxruntime"])  # type: ignore[index]
                ok = ok and bool(timings[name]["graph_equals_stream"])  # type: ignore[index]
            except Exception:  # noqa: BLE001 (recorded: the other model is still measured)
                timings[name] = {"error": traceback.format_exc()[-3000:]}
                ok = False
            print(name, json.dumps(timings[name], indent=1))
    result["timings"] = timings
    result["passed"] = ok
    (args.out / "cuda_smoke.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out / 'cuda_smoke.json'}; passed: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
