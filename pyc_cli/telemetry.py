"""Run telemetry for the online feedback planner (issue #16 point 5, docs/planner.md "Feedback").

With `PYC_TELEMETRY=PATH` in the environment, a model loaded by `pyc_cli.load` (the Python API,
`pyc run`) records, for every successful run: the input shapes (a histogram), the plan that
served it (`generic` or a shape bucket's id), the thread count it ran with and its latency
(count, sum, min, max and a log-scale histogram per plan, dims and threads). Every
`PYC_TELEMETRY_KERNEL_EVERY`-th run of a plan (default 50; 0: never) is also run once more, in a
background thread, through the `pyc run --profile` build of that plan (runtime/kernel_sampler.py)
at the run's own shapes to time each kernel call (at most MAX_KERNEL_POINTS plan and dims points
per process; not the generic plan of an artifact with shape buckets); the profiling library is
compiled in that thread on first need, so no run waits for it. The file is written atomically
(a temporary file, then `os.replace`) under an exclusive `flock` of `PATH.lock`, merged with
what is already there, so runs and processes add up. `pyc build MODEL --feedback PATH` replans
from it (pyc_cli/feedback.py).

The format (version 1; every list sorted, so equal contents give equal bytes):

    {"format": "pyc-telemetry", "version": 1,
     "model": {"sha256": SOURCE MODEL SHA256, "dims": [DIM NAMES], "inputs": [INPUT NAMES]},
     "runs": TOTAL,
     "shapes":  [{"shapes": {INPUT: [SIZES]}, "count": N, "plans": {PLAN: N}}],
     "latency": [{"plan": PLAN, "dims": {DIM: SIZE}, "threads": T, "runs": N, "sum_ms": S,
                  "min_ms": A, "max_ms": B, "hist": {"K": N}}],
     "kernels": [{"plan": PLAN, "dims": {DIM: SIZE}, "call": I, "node": NODE, "op": OP,
                  "kernel": KERNEL, "signature": KEY or null, "samples": N, "sum_ms": S,
                  "min_ms": A}]}

`shapes` holds the inputs with symbolic dims (every input of a static model); each shapes entry
is also a valid `--shape-sample` entry once `plans` is dropped. `hist` key K counts runs whose
latency lies in [2^(K/8), 2^((K+1)/8)) microseconds (8 buckets an octave: a percentile read from
it is within 9%). `signature` is the tuning database's key of a static node's kernel work
(passes/tuning.signature_key), null for a node with symbolic dims. Names are JSON strings,
escaped by the encoder; nothing read from this file reaches generated C.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import math
import os
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PycError, PycWarning
from .files import replace_text

FORMAT = "pyc-telemetry"
VERSION = 1
ENV_PATH = "PYC_TELEMETRY"
ENV_KERNEL_EVERY = "PYC_TELEMETRY_KERNEL_EVERY"
ENV_FLUSH_EVERY = "PYC_TELEMETRY_FLUSH_EVERY"
KERNEL_EVERY = 50  # a plan's every 50th run is profiled kernel by kernel
MAX_KERNEL_POINTS = 64  # (plan, dims) points a process records kernel timings for
FLUSH_EVERY = 200  # runs between writes (and at close / exit)
HIST_PER_OCTAVE = 8


# in-memory keys (tuples: a run's record must stay cheap); the file's order sorts by them
Key = tuple[Any, ...]


def _shapes_key(shapes: Mapping[str, Any]) -> Key:
    return tuple(sorted((name, tuple(shape)) for name, shape in shapes.items()))


def _dims_key(dims: Mapping[str, int]) -> Key:
    return tuple(sorted(dims.items()))


def hist_key(ms: float) -> int:
    """The latency histogram's bucket of `ms` milliseconds (module docstring)."""
    return int(math.floor(math.log2(max(ms * 1000.0, 1e-3)) * HIST_PER_OCTAVE))


def hist_value_ms(key: int) -> float:
    """The middle of bucket `key`, in milliseconds (geometric mean of its bounds)."""
    return 2.0 ** ((key + 0.5) / HIST_PER_OCTAVE) / 1000.0


def malformed(path: Path | str, what: str) -> PycError:
    return PycError("E068", f"the telemetry file {Path(path).name} is malformed: {what}",
                    where=str(path), hint="record it again with PYC_TELEMETRY=PATH (docs/"
                    "planner.md, \"Feedback\"), or remove it")


class Telemetry:
    """The merged content of a telemetry file, as plain dicts keyed for merging."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model
        self.runs = 0
        self.shapes: dict[Key, dict[str, Any]] = {}
        self.latency: dict[Key, dict[str, Any]] = {}
        self.kernels: dict[Key, dict[str, Any]] = {}

    # -------------------------------------------------------------- recording

    def add_run(self, shapes: Mapping[str, list[int]], plan: str, dims: Mapping[str, int],
                threads: int, times_ms: list[float]) -> None:
        count = len(times_ms)
        self.runs += count
        key = _shapes_key(shapes)
        entry = self.shapes.setdefault(key, {"shapes": dict(sorted(shapes.items())), "count": 0,
                                             "plans": {}})
        entry["count"] += count
        entry["plans"][plan] = entry["plans"].get(plan, 0) + count
        lat_key = (plan, _dims_key(dims), threads)
        lat = self.latency.setdefault(lat_key, {
            "plan": plan, "dims": dict(sorted(dims.items())), "threads": threads, "runs": 0,
            "sum_ms": 0.0, "min_ms": math.inf, "max_ms": 0.0, "hist": {}})
        for ms in times_ms:
            lat["runs"] += 1
            lat["sum_ms"] += ms
            lat["min_ms"] = min(lat["min_ms"], ms)
            lat["max_ms"] = max(lat["max_ms"], ms)
            k = str(hist_key(ms))
            lat["hist"][k] = lat["hist"].get(k, 0) + 1

    def add_kernel(self, plan: str, dims: Mapping[str, int], call: int, node: str, op: str,
                   kernel: str, signature: str | None, ms: float) -> None:
        key = (plan, _dims_key(dims), call)
        entry = self.kernels.setdefault(key, {
            "plan": plan, "dims": dict(sorted(dims.items())), "call": call, "node": node,
            "op": op, "kernel": kernel, "signature": signature, "samples": 0, "sum_ms": 0.0,
            "min_ms": math.inf})
        entry["samples"] += 1
        entry["sum_ms"] += ms
        entry["min_ms"] = min(entry["min_ms"], ms)

    # -------------------------------------------------------------- merging

    def merge(self, other: Telemetry) -> None:
        """Add `other`'s counts and times into this one (same model)."""
        self.runs += other.runs
        for key, entry in other.shapes.items():
            mine = self.shapes.setdefault(key, {"shapes": entry["shapes"], "count": 0, "plans": {}})
            mine["count"] += entry["count"]
            for plan, n in entry["plans"].items():
                mine["plans"][plan] = mine["plans"].get(plan, 0) + n
        for key, entry in other.latency.items():
            mine = self.latency.setdefault(key, {**entry, "runs": 0, "sum_ms": 0.0,
                                                 "min_ms": math.inf, "max_ms": 0.0, "hist": {}})
            mine["runs"] += entry["runs"]
            mine["sum_ms"] += entry["sum_ms"]
            mine["min_ms"] = min(mine["min_ms"], entry["min_ms"])
            mine["max_ms"] = max(mine["max_ms"], entry["max_ms"])
            for k, n in entry["hist"].items():
                mine["hist"][k] = mine["hist"].get(k, 0) + n
        for key, entry in other.kernels.items():
            mine = self.kernels.setdefault(key, {**entry, "samples": 0, "sum_ms": 0.0,
                                                 "min_ms": math.inf})
            mine["samples"] += entry["samples"]
            mine["sum_ms"] += entry["sum_ms"]
            mine["min_ms"] = min(mine["min_ms"], entry["min_ms"])

    # -------------------------------------------------------------- the file

    def to_json(self) -> dict[str, Any]:
        def ordered(entries: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for _, entry in sorted(entries.items()):
                entry = dict(entry)
                if "hist" in entry:
                    entry["hist"] = dict(sorted(entry["hist"].items(), key=lambda kv: int(kv[0])))
                if "plans" in entry:
                    entry["plans"] = dict(sorted(entry["plans"].items()))
                out.append(entry)
            return out

        return {"format": FORMAT, "version": VERSION, "model": self.model, "runs": self.runs,
                "shapes": ordered(self.shapes), "latency": ordered(self.latency),
                "kernels": ordered(self.kernels)}

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> Telemetry:
        """Checked (E068 naming what is wrong)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise malformed(path, f"not a {FORMAT} file (no \"format\": \"{FORMAT}\")")
        if data.get("version") != VERSION:
            raise malformed(path, f"format version {data.get('version')!r}; this PyC reads "
                            f"version {VERSION}")
        model = data.get("model")
        if not (isinstance(model, dict) and isinstance(model.get("sha256"), str)
                and _strings(model.get("dims")) and _strings(model.get("inputs"))):
            raise malformed(path, "`model` is not {sha256, dims, inputs}")
        out = cls({"sha256": model["sha256"], "dims": list(model["dims"]),
                   "inputs": list(model["inputs"])})
        if not _count(data.get("runs")):
            raise malformed(path, "`runs` is not a non-negative integer")
        out.runs = data["runs"]
        for index, entry in enumerate(_list(data, "shapes", path)):
            _check_shapes_entry(entry, index, path)
            out.shapes[_shapes_key(entry["shapes"])] = {
                "shapes": {k: list(v) for k, v in sorted(entry["shapes"].items())},
                "count": entry["count"], "plans": dict(entry["plans"])}
        for index, entry in enumerate(_list(data, "latency", path)):
            _check_latency_entry(entry, index, path)
            out.latency[(entry["plan"], _dims_key(entry["dims"]), entry["threads"])] = {
                **entry, "sum_ms": float(entry["sum_ms"]), "min_ms": float(entry["min_ms"]),
                "max_ms": float(entry["max_ms"]), "hist": dict(entry["hist"]),
                "dims": dict(sorted(entry["dims"].items()))}
        for index, entry in enumerate(_list(data, "kernels", path)):
            _check_kernel_entry(entry, index, path)
            out.kernels[(entry["plan"], _dims_key(entry["dims"]), entry["call"])] = {
                **entry, "sum_ms": float(entry["sum_ms"]), "min_ms": float(entry["min_ms"]),
                "dims": dict(sorted(entry["dims"].items()))}
        return out


def read(path: str | Path) -> Telemetry:
    """A telemetry file, checked (E068 for a file that is missing, not JSON or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise PycError("E068", f"the telemetry file {path} does not exist or is not a file",
                       where=str(path), hint="give --feedback the file PYC_TELEMETRY wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise malformed(path, f"not JSON ({exc})") from None
    return Telemetry.from_json(data, path)


def dumps(telemetry: Telemetry) -> str:
    return json.dumps(telemetry.to_json(), indent=1, sort_keys=False, allow_nan=False) + "\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock of PATH.lock (processes writing one telemetry file take turns)."""
    with open(f"{path}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_into(path: str | Path, delta: Telemetry) -> Telemetry:
    """Add `delta` to the file at `path` (created if absent), atomically and under its lock;
    the merged content. E068 where the file there is malformed or of another model (it is
    left as it is)."""
    path = Path(path)
    with _locked(path):
        merged = Telemetry(delta.model)
        if path.exists():
            merged = read(path)
            if merged.model != delta.model:
                raise PycError("E068", f"the telemetry file {path.name} was recorded for another "
                               f"model (sha256 {merged.model['sha256'][:12]}, dims "
                               f"{merged.model['dims']}) than this one (sha256 "
                               f"{delta.model['sha256'][:12]}, dims {delta.model['dims']})",
                               where=str(path), hint="give each model its own PYC_TELEMETRY file")
        merged.merge(delta)
        replace_text(path, dumps(merged))
    return merged


# ------------------------------------------------------------------ checks of read entries


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _count(value: Any, positive: bool = False) -> bool:
    return type(value) is int and value >= (1 if positive else 0)


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _list(data: dict[str, Any], key: str, path: Path | str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise malformed(path, f"`{key}` is not a list")
    return value


def _dims_ok(dims: Any) -> bool:
    return isinstance(dims, dict) and all(isinstance(k, str) and _count(v) for k, v in dims.items())


def _check_shapes_entry(entry: Any, index: int, path: Path | str) -> None:
    if not (isinstance(entry, dict) and set(entry) == {"shapes", "count", "plans"}
            and _count(entry["count"], positive=True) and isinstance(entry["shapes"], dict)
            and entry["shapes"] and all(isinstance(k, str) and isinstance(v, list)
                                        and all(_count(d) for d in v)
                                        for k, v in entry["shapes"].items())
            and isinstance(entry["plans"], dict)
            and all(isinstance(k, str) and _count(v, positive=True)
                    for k, v in entry["plans"].items())
            and sum(entry["plans"].values()) == entry["count"]):
        raise malformed(path, f"shapes entry {index} is not {{shapes: {{INPUT: [SIZES]}}, count: "
                        "N > 0, plans: {PLAN: N} summing to count}")


def _check_latency_entry(entry: Any, index: int, path: Path | str) -> None:
    keys = {"plan", "dims", "threads", "runs", "sum_ms", "min_ms", "max_ms", "hist"}
    if not (isinstance(entry, dict) and set(entry) == keys and isinstance(entry["plan"], str)
            and _dims_ok(entry["dims"]) and _count(entry["threads"])
            and _count(entry["runs"], positive=True)
            and all(_number(entry[k]) for k in ("sum_ms", "min_ms", "max_ms"))
            and isinstance(entry["hist"], dict)
            and all(isinstance(k, str) and k.lstrip("-").isdigit() and _count(v, positive=True)
                    for k, v in entry["hist"].items())
            and sum(entry["hist"].values()) == entry["runs"]):
        raise malformed(path, f"latency entry {index} is not {{plan, dims, threads, runs, sum_ms, "
                        "min_ms, max_ms, hist}} with a histogram counting its runs")


def _check_kernel_entry(entry: Any, index: int, path: Path | str) -> None:
    keys = {"plan", "dims", "call", "node", "op", "kernel", "signature", "samples", "sum_ms",
            "min_ms"}
    if not (isinstance(entry, dict) and set(entry) == keys and isinstance(entry["plan"], str)
            and _dims_ok(entry["dims"]) and _count(entry["call"])
            and all(isinstance(entry[k], str) for k in ("node", "op", "kernel"))
            and (entry["signature"] is None or isinstance(entry["signature"], str))
            and _count(entry["samples"], positive=True)
            and _number(entry["sum_ms"]) and _number(entry["min_ms"])):
        raise malformed(path, f"kernels entry {index} is not {{plan, dims, call, node, op, kernel, "
                        "signature, samples, sum_ms, min_ms}}")


# ------------------------------------------------------------------ the runtime recorder

def model_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a telemetry file is recorded for: the source model's sha256, the artifact's dims and
    inputs (a rebuild with other dims or inputs is another model to the planner)."""
    return {"sha256": str(manifest["model"]["sha256"]),
            "dims": [str(d["name"]) for d in manifest.get("dims", [])],
            "inputs": [str(e["name"]) for e in manifest["inputs"]]}


class Recorder:
    """Collects a loaded model's runs in memory and merges them into the file every
    FLUSH_EVERY runs, at `close` and at interpreter exit. Thread-safe. Never fails a run: a
    write that fails is warned once (PYC-W-less: a PycWarning of the E068 or OSError) and its
    runs are kept for the next try."""

    def __init__(self, path: Path, manifest: dict[str, Any], root: Path,
                 kernel_every: int = KERNEL_EVERY, flush_every: int = FLUSH_EVERY) -> None:
        self.path = path
        self.root = root
        self.manifest = manifest
        self.identity = model_identity(manifest)
        self.symbolic = {e["name"] for e in manifest["inputs"] if "dims" in e} or \
            {e["name"] for e in manifest["inputs"]}
        self.dim_names = self.identity["dims"]
        self.threads = _threads(manifest)
        self.kernel_every = kernel_every
        self.flush_every = flush_every
        self._delta = Telemetry(self.identity)
        self._lock = threading.Lock()
        self._pending = 0
        self._plan_runs: dict[str, int] = {}
        self._points: set[Key] = set()  # (plan, dims) points with kernel timings, this process
        self._warned = False
        self._profiler: Any = None
        # the generic plan of an artifact with buckets: its profiling build would need the
        # dispatch table regenerated (runtime/kernel_sampler.py); its kernels are not timed
        self._unprofiled = {"generic"} if manifest.get("buckets") else set()
        atexit.register(_flush_at_exit, weakref.ref(self))

    def record(self, feeds: Mapping[str, Any], plan: str, times_ms: list[float]) -> None:
        shapes = {name: [int(d) for d in np.shape(feeds[name])] for name in sorted(self.symbolic)
                  if name in feeds}
        dims = _dims_of(self.manifest, feeds) if self.dim_names else {}
        with self._lock:
            self._delta.add_run(shapes, plan, dims, self.threads, times_ms)
            self._pending += len(times_ms)
            runs = self._plan_runs[plan] = self._plan_runs.get(plan, 0) + len(times_ms)
            due = self._pending >= self.flush_every
        if self.kernel_every and runs % self.kernel_every == 0 and plan not in self._unprofiled:
            self._sample_kernels(plan, dims, feeds)
        if due:
            self.flush()

    def _sample_kernels(self, plan: str, dims: dict[str, int], feeds: Mapping[str, Any]) -> None:
        with self._lock:
            if self._profiler is None:
                # imported when a sample is first due: the profiling build pulls in the code
                # generator, which a run without kernel samples never needs
                from .runtime.kernel_sampler import KernelSampler

                self._profiler = KernelSampler(self.root, self.manifest, self._add_kernels)
        self._profiler.submit(plan, dims, feeds)

    def _add_kernels(self, plan: str, dims: dict[str, int], rows: list[tuple[Any, ...]]) -> None:
        point = (plan, _dims_key(dims))
        with self._lock:
            self._points.add(point)
            if len(self._points) > MAX_KERNEL_POINTS:  # the file stays small: new points dropped
                self._points.discard(point)
                return
            for row in rows:
                self._delta.add_kernel(plan, dims, *row)

    def flush(self) -> None:
        """Merge what was recorded since the last flush into the file."""
        with self._lock:
            delta, self._delta = self._delta, Telemetry(self.identity)
            self._pending = 0
        if delta.runs == 0 and not delta.kernels:
            return
        try:
            merge_into(self.path, delta)
        except (PycError, OSError) as error:
            with self._lock:  # keep the runs for the next try
                delta.merge(self._delta)
                self._delta = delta
            if not self._warned:
                self._warned = True
                warnings.warn(PycWarning(error if isinstance(error, PycError) else PycError(
                    "E068", f"cannot write the telemetry file: {error}", where=str(self.path),
                    hint="point PYC_TELEMETRY at a writable file")), stacklevel=2)

    def close(self) -> None:
        profiler = self._profiler
        if profiler is not None:
            profiler.close()
        self.flush()


def _flush_at_exit(ref: weakref.ref[Recorder]) -> None:
    recorder = ref()
    if recorder is not None:
        with contextlib.suppress(Exception):
            recorder.close()


def _threads(manifest: dict[str, Any]) -> int:
    """The thread count runs use: PYC_NUM_THREADS where set, else the build's (0: every core,
    recorded as the core count)."""
    text = os.environ.get("PYC_NUM_THREADS", "").strip()
    threads = int(text) if text.isdigit() else int(manifest.get("flags", {}).get("threads", 0))
    return threads if threads > 0 else (os.cpu_count() or 1)


def _dims_of(manifest: dict[str, Any], feeds: Mapping[str, Any]) -> dict[str, int]:
    """The run's dims from its inputs' shapes (the manifest's `dims` of each input)."""
    dims: dict[str, int] = {}
    for entry in manifest["inputs"]:
        for dim, size in zip(entry.get("dims", []), np.shape(feeds[entry["name"]])):
            if isinstance(dim, str):
                dims.setdefault(dim, int(size))
    return dict(sorted(dims.items()))


def attach(model: Any, root: Path, manifest: dict[str, Any]) -> None:
    """Give a loaded model a Recorder when PYC_TELEMETRY names a file (the CPU target only)."""
    path = os.environ.get(ENV_PATH, "").strip()
    if not path or manifest.get("target") != "cpu":
        return
    model.telemetry = Recorder(Path(path), manifest, root,
                               _env_int(ENV_KERNEL_EVERY, KERNEL_EVERY),
                               max(1, _env_int(ENV_FLUSH_EVERY, FLUSH_EVERY)))


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() else default


def time_hist_percentile(hist: Mapping[str, int], p: float) -> float:
    """The p-th percentile (0..100) of a latency histogram, in ms (a bucket's middle)."""
    total = sum(hist.values())
    rank, seen = p / 100.0 * total, 0
    for key in sorted(hist, key=int):
        seen += hist[key]
        if seen >= rank:
            return hist_value_ms(int(key))
    return 0.0

