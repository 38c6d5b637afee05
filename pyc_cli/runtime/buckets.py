"""Dispatch by shape for an artifact with shape buckets (issue #15 points 3 and 5,
pyc_cli/buckets.py): a run whose dims lie in a bucket's box runs the smallest such bucket's plan,
loaded on its first such run (its hashes verified before its code is mapped); any other runs the
generic one. The dispatch (the inputs' shapes to dims, then a containment test per box, smallest
box first) is timed; `model.stats` counts runs per plan."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

GENERIC = "generic"

Box = tuple[tuple[str, int, int], ...]  # (dim, lo, hi) sorted by dim name


def box_volume(box: Box) -> int:
    """The product of the box's upper bounds: the sizes its plan is made for."""
    volume = 1
    for _, _, hi in box:
        volume *= hi
    return volume


def dispatch_order(boxes: Sequence[tuple[str, Box]]) -> list[tuple[str, Box]]:
    """The order dispatch tries the boxes in (in Python here, in the generated C by the table
    the build writes in this order): the smallest first, an exact one before a range of the
    same volume, then by id (b2 before b10)."""
    return sorted(boxes, key=lambda item: (box_volume(item[1]),
                                           not all(lo == hi for _, lo, hi in item[1]),
                                           len(item[0]), item[0]))


class BucketDispatch:
    """The bucket a run goes to. `boxes` holds each bucket's id and box, `inputs` each input
    with symbolic dims and its dims as built (names and numbers: `["batch", 512]`), `load`
    loads a bucket's model by id (once, under a lock)."""

    def __init__(self, boxes: Sequence[tuple[str, Box]], inputs: Sequence[tuple[str, list[Any]]],
                 load: Callable[[str], Any]) -> None:
        self.order = dispatch_order(boxes)
        self.inputs = list(inputs)
        self.table = {bucket: box for bucket, box in boxes}
        self._load = load
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def dims(self, feeds: Mapping[str, Any]) -> dict[str, int] | None:
        """The run's dims from its inputs' shapes; None where the shapes are not the model's
        (a rank, a static size or a shared dim that differs: the generic plan reports it)."""
        env: dict[str, int] = {}
        try:
            for name, dims in self.inputs:
                shape = feeds[name].shape
                if len(shape) != len(dims):
                    return None
                for dim, size in zip(dims, shape):
                    if isinstance(dim, str):
                        if env.setdefault(dim, size) != size:
                            return None
                    elif dim != size:
                        return None
        except (KeyError, AttributeError, TypeError):
            return None
        return env

    def pick(self, feeds: Mapping[str, Any]) -> tuple[str, float]:
        """(the plan of a run of `feeds`: a bucket id or GENERIC, microseconds to decide)."""
        started = time.perf_counter_ns()
        env = self.dims(feeds)
        plan = GENERIC
        if env is not None:
            for bucket, box in self.order:
                if all(lo <= env.get(name, -1) <= hi for name, lo, hi in box):
                    plan = bucket
                    break
        return plan, (time.perf_counter_ns() - started) / 1000.0

    def model(self, bucket: str) -> Any:
        with self._lock:
            if bucket not in self._models:
                self._models[bucket] = self._load(bucket)
            return self._models[bucket]

    def trim(self) -> int:
        """CompiledModel.trim of every bucket loaded: the bytes released."""
        with self._lock:
            models = list(self._models.values())
        return sum(model.trim() for model in models)

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
