"""`pyc build MODEL --feedback TELEMETRY` (issue #16 point 5): replan from what a deployment's
runs observed (pyc_cli/telemetry.py records them with PYC_TELEMETRY=PATH).

Three decisions come from the telemetry, each logged with `serves: feedback:...`:

- **shape buckets** (`feedback:shape_histogram`): the observed shapes are the shape sample
  (pyc_cli/buckets.py clusters them into boxes exactly as for `--shape-sample`; given both,
  their counts add);
- **kernel choices** (`feedback:kernel_time`): where the telemetry timed two or more kernels
  for the same static kernel work (the tuning database's signature: plans of several buckets,
  or builds, ran it differently), the fastest measured one is chosen, as a tuning database
  entry would be (a database entry measured by `--tune` still wins: it timed every variant);
- **the thread count** (`feedback:thread_split`): where the same plan ran the same dims with two
  or more thread counts, the count whose runs were fastest on the observed mix (each dims point
  weighted by its runs) becomes the build's default (only where `--threads` was not given).

The telemetry must be of this model (the source model's sha256) and of its dims; otherwise, or
for a malformed file, PYC-E068. The artifact records the file's sha256 (`flags.feedback`): the
same telemetry and flags give a byte-identical artifact.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact.manifest import file_sha256
from .buckets import ShapeKey, dim_bounds, symbolic_inputs
from .errors import PycError
from .ir.annotations import KernelChoice
from .passes.tuning import KernelSignature, Measurement, TuningDatabase, signature_key
from .telemetry import Telemetry, read

MIN_THREAD_RUNS = 3  # a thread count needs this many runs of a dims point to be compared


@dataclass(frozen=True)
class Feedback:
    """A telemetry file read for a rebuild: where, its sha256, its content."""

    path: Path
    sha256: str
    telemetry: Telemetry

    def record(self) -> dict[str, Any]:
        """What the manifest's flags keep of it (its name would make the bytes depend on paths)."""
        return {"sha256": self.sha256, "runs": self.telemetry.runs}

    def sample(self) -> Counter[ShapeKey]:
        """The observed shapes as a shape sample (buckets.read_sample's form)."""
        counts: Counter[ShapeKey] = Counter()
        for entry in self.telemetry.shapes.values():
            counts[tuple(sorted((k, tuple(v)) for k, v in entry["shapes"].items()))] += \
                entry["count"]
        return counts


def read_feedback(path: str | Path, model_path: Path,
                  input_shapes: Mapping[str, Sequence[object]] | None) -> Feedback:
    """The telemetry at `path`, checked to be this model's (E068 otherwise)."""
    path = Path(path)
    telemetry = read(path)
    model_sha = file_sha256(model_path)
    if telemetry.model["sha256"] != model_sha:
        raise PycError("E068", f"the telemetry {path.name} was recorded for another model (sha256 "
                       f"{telemetry.model['sha256'][:16]}...), not {model_path.name} (sha256 "
                       f"{model_sha[:16]}...)", where=str(path),
                       hint="give --feedback the telemetry of this model's artifact")
    dims = list(dim_bounds(symbolic_inputs(input_shapes or {})))
    if telemetry.model["dims"] != dims:
        raise PycError("E068", f"the telemetry {path.name} was recorded with the dims "
                       f"{telemetry.model['dims']}; this build's --input-shape gives {dims}",
                       where=str(path),
                       hint="rebuild with the --input-shape the telemetry's artifact was built with")
    return Feedback(path, hashlib.sha256(path.read_bytes()).hexdigest(), telemetry)


def histogram_note(feedback: Feedback) -> str:
    """The decision-log line for the shape histogram the buckets are chosen from."""
    shapes = sorted(feedback.telemetry.shapes.values(), key=lambda e: -e["count"])
    top = ", ".join(f"{_shapes_text(e['shapes'])} x{e['count']}" for e in shapes[:4])
    plans: Counter[str] = Counter()
    for entry in shapes:
        plans.update(entry["plans"])
    served = ", ".join(f"{plan} {n}" for plan, n in sorted(plans.items()))
    return (f"shape buckets chosen from the {feedback.telemetry.runs} runs the telemetry "
            f"observed ({len(shapes)} distinct shapes; most frequent: {top}); the old artifact "
            f"served them on: {served}")


def _shapes_text(shapes: Mapping[str, Sequence[int]]) -> str:
    """The first input's shape (inputs sharing the dims repeat it), `+N` for the others."""
    first, *others = sorted(shapes)
    return f"{first}{list(shapes[first])}" + (f" (+{len(others)} inputs)" if others else "")


# ------------------------------------------------------------------ threads

def thread_choice(feedback: Feedback) -> tuple[int, str] | None:
    """The thread count whose runs were fastest on the observed mix, and why; None where no
    (plan, dims) point ran with two thread counts at least MIN_THREAD_RUNS times each."""
    by_point: dict[tuple[str, str], dict[int, tuple[int, float]]] = {}
    for entry in feedback.telemetry.latency.values():
        if entry["runs"] >= MIN_THREAD_RUNS:
            point = (entry["plan"], repr(sorted(entry["dims"].items())))
            by_point.setdefault(point, {})[entry["threads"]] = (entry["runs"], entry["sum_ms"])
    compared = {p: t for p, t in by_point.items() if len(t) >= 2}
    if not compared:
        return None
    counts = sorted({t for times in compared.values() for t in times})
    # the observed mix: every compared point weighted by its runs (all thread counts together)
    weight = {p: sum(r for r, _ in t.values()) for p, t in compared.items()}
    totals = {}
    for threads in counts:
        points = [p for p, t in compared.items() if threads in t]
        if len(points) != len(compared):
            continue  # compare counts over the same points only
        totals[threads] = sum(weight[p] * compared[p][threads][1] / compared[p][threads][0]
                              for p in points)
    if len(totals) < 2:
        return None
    best = min(totals, key=lambda t: (totals[t], t))
    table = ", ".join(f"{t} threads {totals[t] / sum(weight.values()):.3f} ms" for t in sorted(totals))
    return best, (f"measured mean latency over {len(compared)} (plan, dims) points the telemetry "
                  f"ran at several thread counts, weighted by their runs: {table}; {best} is the "
                  "fastest")


# ------------------------------------------------------------------ kernel choices

@dataclass
class FeedbackTuning:
    """A TuningDatabase: `base`'s choices first, then the fastest kernel the telemetry timed for
    a signature where it timed two or more (select_kernels logs such a choice as
    `feedback:kernel_time`)."""

    base: TuningDatabase | None
    timed: dict[str, dict[str, float]] = field(default_factory=dict)  # signature -> kernel -> ms

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        if self.base is not None:
            found = self.base.lookup(signature)
            if found is not None:
                return found
        kernels = self.timed.get(signature_key(signature), {})
        if len(kernels) < 2:
            return None
        return KernelChoice(min(kernels, key=lambda k: (kernels[k], k)))

    def measurements(self, signature: KernelSignature) -> tuple[Measurement, ...]:
        if self.base is not None and self.base.lookup(signature) is not None:
            timings = getattr(self.base, "measurements", None)
            return tuple(timings(signature)) if timings else ()
        kernels = self.timed.get(signature_key(signature), {})
        return tuple(Measurement(k, (), ms) for k, ms in sorted(kernels.items(),
                                                                 key=lambda kv: (kv[1], kv[0])))

    def serves(self, signature: KernelSignature) -> str:
        """The rule a lookup's choice serves: the tuning database's, or this telemetry's."""
        if self.base is not None and self.base.lookup(signature) is not None:
            return "tuning:measured"
        return "feedback:kernel_time"


def kernel_times(feedback: Feedback) -> dict[str, dict[str, float]]:
    """Mean ms per call of each kernel the telemetry timed, by static kernel signature."""
    sums: dict[str, dict[str, list[float]]] = {}
    for entry in feedback.telemetry.kernels.values():
        if entry["signature"] is None:
            continue
        acc = sums.setdefault(entry["signature"], {}).setdefault(entry["kernel"], [0.0, 0.0])
        acc[0] += entry["sum_ms"]
        acc[1] += entry["samples"]
    return {sig: {k: total / n for k, (total, n) in kernels.items()}
            for sig, kernels in sums.items()}


def feedback_tuning(feedback: Feedback, base: TuningDatabase | None) -> FeedbackTuning:
    return FeedbackTuning(base, kernel_times(feedback))


def kernel_note(feedback: Feedback) -> str | None:
    """The decision-log line for the kernel timings the build read (None: none timed)."""
    kernels = feedback.telemetry.kernels
    if not kernels:
        return None
    times = kernel_times(feedback)
    compared = sum(1 for k in times.values() if len(k) >= 2)
    samples = sum(e["samples"] for e in kernels.values())
    total = sum(e["sum_ms"] for e in kernels.values()) or 1.0
    slowest = sorted(kernels.values(), key=lambda e: (-e["sum_ms"], e["call"]))[:3]
    top = ", ".join(f"{e['node']} ({e['kernel']}, {e['plan']}) {100 * e['sum_ms'] / total:.0f}%"
                    for e in slowest)
    return (f"{samples} kernel timings of {len(kernels)} calls read from the telemetry "
            f"(slowest share: {top}); {len(times)} static kernel signatures, {compared} timed "
            "with two kernels or more (those choose the fastest measured)")
