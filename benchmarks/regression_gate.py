"""The performance regression gate (`make bench-check`; issue #13 point 6), run through
`real_models.py --write-baseline / --check`.

A baseline (benchmarks/baselines/cpu.json) holds, per model, the PyC / onnxruntime p50 ratio of
a short configuration of real_models.py (the models, repeat, rounds, onnxruntime's threads),
measured in `runs` fresh processes: the ratio kept is their median, and the noise band is 1.5
times the largest relative deviation of one run's ratio from that median. The ratio of two
engines timed in one process, rounds interleaved, follows the machine's speed, so a baseline
from one machine mostly holds on another of its class; the band is what repeated runs showed.
`check` reruns the configuration: a ratio above baseline x (1 + band + MACHINE_ALLOWANCE) is
measured once more in a fresh process, and the gate fails only when that run is above the limit
too. Only a CPU of the baseline's model and vector ISA is gated: on another, the engines' kernels
(and their ratio) differ, and the check only reports. MACHINE_ALLOWANCE is policy, not
measurement: another machine of the same CPU model (other neighbours, other memory) moves the
ratio by more than one machine's run-to-run noise; a regression the gate must catch (a kernel
falling back to a naive loop: the MLP's ratio went from 9 to 41) is far larger.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "real_models.py"
BAND_FACTOR = 1.5


def _run(models: list[str], config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One fresh-process run of real_models.py (PyC and onnxruntime only): results by model."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        command = [sys.executable, str(SCRIPT), "--models", ",".join(models),
                   "--repeat", str(config["repeat"]), "--rounds", str(config["rounds"]),
                   "--threads", str(config["threads"]), "--engines", "pyc,onnxruntime",
                   "--out", str(out)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        return {r["model"]: r for r in json.loads(out.read_text())["results"]}


def _ratio(result: dict[str, Any]) -> float:
    if "error" in result:
        raise RuntimeError(f"{result['model']}: {result['error']}")
    if not result["matches_ort"]:
        raise RuntimeError(f"{result['model']}: PyC's outputs differ from onnxruntime's "
                           f"(max abs diff {result['max_abs_diff']})")
    return float(result["pyc_over_ort_p50"])


# why a model's files cannot be had here (None: they can); real_models.py gives its own
Unavailable = Callable[[str], "str | None"]


def _available(models: list[str], unavailable: Unavailable) -> list[str]:
    kept = []
    for name in models:
        why = unavailable(name)
        if why is None:
            kept.append(name)
        else:
            print(f"{name}: skipped: {why}")
    return kept


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return found.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def cpu_model() -> str:
    if not Path("/proc/cpuinfo").exists():
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())


def _machine() -> dict[str, Any]:
    import onnxruntime as ort

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "load_average_at_start": os.getloadavg()[0],
            "vector_isa": vector_isa()}


def vector_isa() -> str:
    """The widest vector ISA both engines' kernels use here: their ratio is a property of it
    (a baseline from an AVX-512 machine says little about an AVX2 one)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), set())
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if {"avx2", "fma"} <= flags else platform.machine()


def write_baseline(path: Path, models: list[str], repeat: int, rounds: int, threads: int,
                   runs: int, unavailable: Unavailable = lambda name: None) -> int:
    models = _available(models, unavailable)
    config = {"models": models, "repeat": repeat, "rounds": rounds, "threads": threads}
    ratios: dict[str, list[float]] = {m: [] for m in models}
    for index in range(runs):
        results = _run(models, config)
        for name in models:
            ratios[name].append(_ratio(results[name]))
        print(f"run {index + 1}/{runs}: " + ", ".join(f"{m} {ratios[m][-1]:.3f}" for m in models))
    entries = {}
    for name, values in ratios.items():
        median = float(np.median(values))
        deviation = max(abs(v / median - 1) for v in values)
        entries[name] = {"ratio": round(median, 4), "band": round(BAND_FACTOR * deviation, 4),
                         "runs": [round(v, 4) for v in values]}
    baseline = {
        "what": "PyC p50 / onnxruntime p50 per model (benchmarks/real_models.py, PyC and "
                "onnxruntime in one process, rounds interleaved); `make bench-check` fails when "
                "a ratio exceeds ratio x (1 + band) twice in a row",
        "band_method": f"{runs} runs, each in a fresh process; ratio = their median; band = "
                       f"{BAND_FACTOR} x the largest relative deviation of a run's ratio from "
                       "the median",
        "commit": _commit(), "machine": _machine(), "config": config, "models": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


# the ratio may move this much more on another machine of the baseline's class (see above)
MACHINE_ALLOWANCE = 0.25


def check(path: Path, unavailable: Unavailable = lambda name: None) -> int:
    baseline = json.loads(path.read_text())
    config = baseline["config"]
    models = _available([m for m in config["models"] if m in baseline["models"]], unavailable)
    if not models:
        print("no model of the baseline can be measured here: nothing checked")
        return 0
    built_for = (baseline["machine"].get("cpu"), baseline["machine"].get("vector_isa"))
    here = (cpu_model(), vector_isa())
    gate = built_for == here
    if not gate:
        print(f"the baseline was measured on {built_for[0]} ({built_for[1]}) and this CPU is "
              f"{here[0]} ({here[1]}): the engines' ratio is another here, so it is reported, "
              "not gated (write a baseline on this CPU with `make bench-baseline` to gate it)")
    results = _run(models, config)
    failed = []
    for name in models:
        entry = baseline["models"][name]
        limit = entry["ratio"] * (1 + entry["band"] + MACHINE_ALLOWANCE)
        ratio = _ratio(results[name])
        verdict = "ok"
        if ratio > limit:
            again = _ratio(_run([name], config)[name])  # a first excess is measured again
            verdict = f"over the limit twice ({ratio:.3f}, then {again:.3f})" if again > limit \
                else f"ok on re-measurement ({ratio:.3f}, then {again:.3f})"
            ratio = again
            if again > limit and gate:
                failed.append(name)
        elif ratio < entry["ratio"] * (1 - entry["band"]):
            verdict = "faster than the baseline beyond its band: consider rewriting it"
        print(f"{name:>10}: PyC/onnxruntime {ratio:.3f} (baseline {entry['ratio']:.3f}, limit "
              f"{limit:.3f}: band {entry['band'] * 100:.1f}% + machine allowance "
              f"{MACHINE_ALLOWANCE * 100:.0f}%): {verdict}")
    if failed:
        print(f"performance regression: {', '.join(failed)} (baseline {path}, commit "
              f"{baseline['commit']})")
        return 1
    return 0
