"""Shape buckets (issue #15 point 3): the exact input shapes a deployment sees most often, each
built as a static plan beside the generic symbolic one (docs/dynamic_shapes.md, "Shape buckets").

A bucket is an EXACT static shape of every symbolic input: a request of exactly that shape runs
the bucket's plan, any other runs the generic plan. (Padding a request up to a bucket would change
the results of most models: a softmax over padded keys.) The sample of real shapes is read from
`--shape-sample FILE`:

- a JSON histogram: `[{"shapes": {"x": [8, 128]}, "count": 120}, ...]`;
- an .npz of example inputs: keys `INPUT` (one request) or `REQUEST/INPUT` (several requests,
  e.g. `0/x`, `1/x`); only the arrays' shapes are read.

Buckets are chosen deterministically: the distinct shapes sorted by count (most frequent first,
ties by shape), kept while their share of the sample is at least MIN_SHARE, at most the count
asked for.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PycError
from .ir.symbolic import Dim, check_within

AUTO_BUCKETS = 4  # `--shape-buckets auto`: at most this many
MIN_SHARE = 0.05  # a shape seen less often than this is not worth a plan of its own
BUCKETS_DIR = "buckets"

ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]  # (input, shape) sorted by input name


@dataclass(frozen=True)
class Bucket:
    """One static plan of the artifact: its id (`b0` most frequent), its exact input shapes,
    how many requests of the sample had them, and why it exists."""

    id: str
    shapes: dict[str, tuple[int, ...]]
    count: int
    share: float
    reason: str

    def directory(self) -> str:
        return f"{BUCKETS_DIR}/{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "dir": self.directory(), "count": self.count,
                "share": self.share, "reason": self.reason,
                "shapes": {name: list(shape) for name, shape in sorted(self.shapes.items())}}


def parse_bucket_count(text: str | int | None) -> int | None:
    """`auto` -> AUTO_BUCKETS, `N` -> N (0 or more), None -> None (no buckets); else E050."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        count = text
    elif isinstance(text, str) and text.strip().lower() == "auto":
        return AUTO_BUCKETS
    elif isinstance(text, str) and text.strip().isdigit():
        count = int(text.strip())
    else:
        count = -1
    if not 0 <= count <= 64:
        raise PycError("E050", f"--shape-buckets {text!r} is not `auto` or a count from 0 to 64",
                       where="--shape-buckets", hint="e.g. --shape-buckets auto or 3")
    return count


def _malformed(path: Path, what: str) -> PycError:
    return PycError("E052", f"the shape sample {path.name} is malformed: {what}", where=str(path),
                    hint='give a JSON list [{"shapes": {"x": [8, 128]}, "count": 120}, ...] or '
                    "an .npz of example inputs (keys INPUT or REQUEST/INPUT); "
                    "docs/dynamic_shapes.md")


def read_sample(path: str | Path) -> Counter[ShapeKey]:
    """The sample's requests counted by their exact shapes (E052 for a malformed file)."""
    path = Path(path)
    if not path.is_file():
        raise PycError("E052", f"the shape sample {path} does not exist or is not a file",
                       where=str(path), hint="give --shape-sample an existing .json or .npz file")
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _malformed(path, f"not JSON ({exc})") from None
    return _read_histogram(path, data)


def _read_histogram(path: Path, data: Any) -> Counter[ShapeKey]:
    if not isinstance(data, list) or not data:
        raise _malformed(path, "the top level is not a non-empty list of entries")
    counts: Counter[ShapeKey] = Counter()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or set(entry) != {"shapes", "count"}:
            raise _malformed(path, f"entry {index} is not an object with exactly `shapes` and "
                             "`count`")
        count, shapes = entry["count"], entry["shapes"]
        if type(count) is not int or count < 1:
            raise _malformed(path, f"entry {index}: count {count!r} is not a positive integer")
        if not isinstance(shapes, dict) or not shapes:
            raise _malformed(path, f"entry {index}: shapes is not a non-empty object")
        key = []
        for name, shape in sorted(shapes.items()):
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                raise _malformed(path, f"entry {index}: the shape of {name!r} is not a list of "
                                 "non-negative integers")
            key.append((name, tuple(shape)))
        counts[tuple(key)] += count
    return counts


def _read_npz(path: Path) -> Counter[ShapeKey]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            shapes = {key: archive[key].shape for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _malformed(path, f"not a readable .npz ({exc})") from None
    if not shapes:
        raise _malformed(path, "it holds no arrays")
    requests: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        request, _, name = key.rpartition("/")
        if not name or "/" in request:
            raise _malformed(path, f"the key {key!r} is not INPUT or REQUEST/INPUT")
        requests.setdefault(request, {})[name] = tuple(int(d) for d in shape)
    counts: Counter[ShapeKey] = Counter()
    for _, inputs in sorted(requests.items()):
        counts[tuple(sorted(inputs.items()))] += 1
    return counts


def check_sample(path: str | Path, counts: Counter[ShapeKey],
                 input_shapes: Mapping[str, Sequence[object]]) -> None:
    """Every request names exactly the inputs given symbolic dims and fits their bounds (E052
    naming the request's shapes and what is wrong)."""
    symbolic = {name: tuple(dims) for name, dims in input_shapes.items()
                if any(isinstance(d, Dim) for d in dims)}
    if not symbolic:
        raise PycError("E052", "--shape-sample needs inputs with bounded symbolic dims",
                       where="--input-shape",
                       hint="give --input-shape NAME=dim:LO..HI,... for the inputs that vary")
    for key in sorted(counts):
        shapes = dict(key)
        if set(shapes) != set(symbolic):
            raise _malformed(Path(path), f"a request names the inputs {sorted(shapes)}; the "
                             f"inputs with symbolic dims are {sorted(symbolic)}")
        env: dict[str, int] = {}
        for name in sorted(symbolic):
            try:
                check_within(name, symbolic[name], shapes[name], env)  # type: ignore[arg-type]
            except PycError as error:
                raise _malformed(Path(path), f"the request {_describe(key)} is outside the "
                                 f"--input-shape bounds: {error.what}") from None


def choose_buckets(counts: Counter[ShapeKey], limit: int,
                   min_share: float = MIN_SHARE) -> tuple[list[Bucket], list[str]]:
    """Up to `limit` most frequent exact shapes of at least `min_share` of the sample, and a
    line per shape left out for want of share or of room (the decision log keeps both)."""
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    buckets: list[Bucket] = []
    left_out: list[str] = []
    for key, count in ranked:
        share = count / total
        if share < min_share:
            left_out.append(f"{_describe(key)}: {count} of {total} requests ({share:.1%}), under "
                            f"the {min_share:.0%} a bucket needs; runs the generic plan")
        elif len(buckets) >= limit:
            left_out.append(f"{_describe(key)}: {count} of {total} requests ({share:.1%}), past "
                            f"the {limit} bucket(s) asked for; runs the generic plan")
        else:
            reason = (f"{count} of {total} requests of the sample ({share:.1%}) have exactly "
                      f"{_describe(key)}: the most frequent shape #{len(buckets) + 1}, "
                      "given a static plan of its own")
            buckets.append(Bucket(f"b{len(buckets)}", dict(key), count, round(share, 6), reason))
    return buckets, left_out


def _describe(key: ShapeKey) -> str:
    return ", ".join(f"{name}[{','.join(map(str, shape))}]" for name, shape in key)


def shape_key(shapes: Mapping[str, Sequence[int]]) -> ShapeKey:
    return tuple(sorted((name, tuple(int(d) for d in shape)) for name, shape in shapes.items()))
