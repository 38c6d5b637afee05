"""A/B of the fused LayerNormalization (targets/cuda/fuse_norm.py) on a GPU: the MiniLM-L6-shaped
encoder (tests/models/make_encoder.py) at batch 1, sequence 128, fp16 on the tensor cores, built
with the LayerNormalizations fused into the GEMMs before them and without (each its own kernel),
both checked against onnxruntime (5e-3 of max |output|), then timed alternately: `kernels_ms`
the launches alone between two CUDA events (one CUDA graph), `wall_ms` a whole run. Prints
JSON (medians, and each build's launch count).

    python benchmarks/cuda_layernorm_fusion.py [--repeat 300] [--rounds 5] [--arch sm_90]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))


def main(argv: list[str] | None = None) -> int:
    import onnx
    import onnxruntime as ort
    from make_encoder import encoder_feeds, make_encoder

    import pyc_cli
    from pyc_cli.runtime.timing import RunPlan
    from pyc_cli.targets.cuda import fuse_norm

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--arch", default="sm_90")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pyc-lnfuse-"))
    path = work / "encoder.onnx"
    onnx.save(make_encoder(batch=1, seq=128), str(path))
    feeds = encoder_feeds(np.random.default_rng(0), 1, 128, 30522)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    kernels = fuse_norm.GEMM_KERNELS
    fused = fuse_norm.FUSABLE_GEMMS
    models, result = {}, {}
    for name, gemms in (("fused", fused), ("unfused", ())):
        fuse_norm.GEMM_KERNELS = gemms
        built = pyc_cli.build(path, work / f"{name}.pyc", target="cuda", arch=args.arch,
                              precision="fp16")
        plan = json.loads((built.artifact / "src" / "launches.json").read_text())
        model = pyc_cli.load(built.artifact)
        ours = list(model.run(feeds).values())[0]
        error = float(np.max(np.abs(ours - expected))) / float(np.max(np.abs(expected)))
        models[name] = model
        result[name] = {"launches": len(plan["launches"]), "relative_error": error,
                        "matches_onnxruntime": error <= 5e-3, "kernels_ms": [], "wall_ms": []}
    fuse_norm.GEMM_KERNELS = kernels
    for _ in range(args.rounds):  # alternate, so that clocks and neighbours affect both alike
        for name, model in models.items():
            result[name]["kernels_ms"].append(statistics.median(model.time_kernels(feeds, args.repeat)))
            result[name]["wall_ms"].append(statistics.median(
                model.time_runs(feeds, RunPlan(warmup=10, repeat=args.repeat))))
    for name, model in models.items():
        model.close()
        for key in ("kernels_ms", "wall_ms"):
            result[name][key] = round(statistics.median(result[name][key]), 4)
    result["device"] = models["fused"].device_name if hasattr(models["fused"], "device_name") else ""
    print(json.dumps(result, indent=1))
    return 0 if all(r["matches_onnxruntime"] for r in result.values() if isinstance(r, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
