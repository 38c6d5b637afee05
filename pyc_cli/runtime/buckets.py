"""Dispatch by shape for an artifact with shape buckets (issue #15 point 3, pyc_cli/buckets.py):
a run whose inputs have exactly a bucket's shapes runs that bucket's static plan, loaded on its
first such run (its hashes verified before its code is mapped); any other runs the generic one.
The dispatch (a dict lookup on the inputs' shapes) is timed; `model.stats` counts runs per plan."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

GENERIC = "generic"

ShapeTable = dict[tuple[tuple[str, tuple[int, ...]], ...], str]


class BucketDispatch:
    """The bucket a run goes to: `table` maps the sorted (input, shape) pairs of each bucket to
    its id, `load` loads a bucket's model by id (once, under a lock)."""

    def __init__(self, table: ShapeTable, names: list[str], load: Callable[[str], Any]) -> None:
        self.table, self.names, self._load = table, sorted(names), load
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def pick(self, feeds: Mapping[str, Any]) -> tuple[str, float]:
        """(the plan of a run of `feeds`: a bucket id or GENERIC, microseconds to decide)."""
        started = time.perf_counter_ns()
        try:
            key = tuple((name, tuple(feeds[name].shape)) for name in self.names)
        except (KeyError, AttributeError, TypeError):
            key = ()  # the generic plan reports what is wrong with the feeds
        plan = self.table.get(key, GENERIC)
        return plan, (time.perf_counter_ns() - started) / 1000.0

    def model(self, bucket: str) -> Any:
        with self._lock:
            if bucket not in self._models:
                self._models[bucket] = self._load(bucket)
            return self._models[bucket]

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
