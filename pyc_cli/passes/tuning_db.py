"""The tuning database on disk: measured kernel choices as one JSON file.

Default place: `$PYC_TUNING_DB`, else `$XDG_CACHE_HOME/pyc/tuning.json`, else
`~/.cache/pyc/tuning.json` (`pyc build --tuning-db PATH` picks another). Entries are filed under
a machine section, the build target plus the CPU it compiles for (architecture, resolved -march
and the feature list the compiler enables) and a digest of the target's kernel code, so timings
from another machine or of other kernels never apply; inside it, by kernel signature
(tuning.signature_key). Each entry keeps the winner and every variant
timed. The file is written to a temporary name and renamed (a reader never sees half), with
sorted keys (the same entries give the same bytes). A file that cannot be read, is not JSON or
holds another schema is ignored with a PYC-E039 warning, never a failure: the next
`pyc build --tune` replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PycError, PycWarning
from ..files import replace_text
from ..ir.annotations import KernelChoice
from .tuning import KernelSignature, Measurement, signature_key

FORMAT = "pyc-tuning-db"
VERSION = 1
ENV = "PYC_TUNING_DB"


def default_path() -> Path:
    """Where `pyc build` reads and `--tune` writes measurements when no --tuning-db is given."""
    explicit = os.environ.get(ENV, "")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache else Path.home() / ".cache"
    return base / "pyc" / "tuning.json"


def machine_key(target: str, cpu: dict[str, Any], kernels: str = "") -> str:
    """The section of the database a build on this target and CPU reads: readable parts plus a
    hash of the full feature list (two CPUs with one -march name may differ in extensions) and
    `kernels`, a digest of the target's kernel code (tune.kernels_digest)."""
    features = ",".join(sorted(str(f) for f in cpu.get("features", [])))
    digest = hashlib.sha256(features.encode()).hexdigest()[:12]
    march = cpu.get("resolved_march", cpu.get("march", "?"))
    return f"{target}:{cpu.get('arch', '?')}:{march}:{digest}" + (f":{kernels}" if kernels else "")


@dataclass
class TuningEntry:
    """The tuned choice for one kernel signature and the variants timed to make it."""

    op: str
    winner: Measurement
    default: Measurement  # the cost model's choice, against which every variant was checked
    measured: tuple[Measurement, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "winner": self.winner.to_json(), "default": self.default.to_json(),
                "measured": [m.to_json() for m in self.measured]}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> TuningEntry:
        return cls(str(entry["op"]), Measurement.from_json(entry["winner"]),
                   Measurement.from_json(entry["default"]),
                   tuple(Measurement.from_json(m) for m in entry["measured"]))

    def choice(self) -> KernelChoice:
        return KernelChoice(self.winner.candidate, dict(self.winner.params))


@dataclass
class FileTuningDatabase:
    """The entries of one machine section of a tuning database file (tuning.TuningDatabase),
    plus the rest of the file, kept as read so that saving does not drop other machines."""

    path: Path
    machine: str
    machine_info: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, TuningEntry] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)  # other machines' sections, verbatim

    @classmethod
    def open(cls, path: str | Path, machine: str, machine_info: dict[str, Any] | None = None
             ) -> FileTuningDatabase:
        """The database at `path` (empty when absent; empty with a PYC-E039 warning when the
        file is unreadable or not this schema)."""
        db = cls(Path(path), machine, dict(machine_info or {}))
        sections = read_sections(db.path)
        mine = sections.pop(machine, None)
        db.others = sections
        if isinstance(mine, dict):
            try:
                db.entries = {str(k): TuningEntry.from_json(v)
                              for k, v in dict(mine.get("entries", {})).items()}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                _warn(db.path, f"its entries for {machine} are malformed ({exc})")
                db.entries = {}
        return db

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        entry = self.entries.get(signature_key(signature))
        return None if entry is None else entry.choice()

    def measurements(self, signature: KernelSignature) -> tuple[Measurement, ...]:
        entry = self.entries.get(signature_key(signature))
        return () if entry is None else entry.measured

    def record(self, signature: KernelSignature, entry: TuningEntry) -> None:
        self.entries[signature_key(signature)] = entry

    def to_json(self) -> dict[str, Any]:
        mine = {"machine": self.machine_info,
                "entries": {k: e.to_json() for k, e in self.entries.items()}}
        return {"format": FORMAT, "version": VERSION,
                "machines": {**self.others, self.machine: mine}}

    def save(self) -> None:
        """Write the file atomically. What another tuning run wrote meanwhile is kept: other
        machines' sections, and this section's entries for signatures this run did not
        measure (two builds tuning different models at once both keep their entries)."""
        latest = read_sections(self.path, quiet=True)
        mine = latest.pop(self.machine, None)
        self.others = {**self.others, **latest}
        if isinstance(mine, dict) and isinstance(mine.get("entries"), dict):
            for key, entry in mine["entries"].items():
                if key not in self.entries:
                    try:
                        self.entries[key] = TuningEntry.from_json(entry)
                    except (KeyError, TypeError, ValueError, AttributeError):
                        continue  # a malformed entry of the other run: dropped
        text = json.dumps(self.to_json(), sort_keys=True, indent=1) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_text(self.path, text)
        except OSError as exc:
            raise PycError("E022", f"cannot write the tuning database: {exc.strerror or exc}",
                           where=str(self.path), hint="choose another --tuning-db PATH") from exc


def read_sections(path: Path, quiet: bool = False) -> dict[str, Any]:
    """The machine sections of the file at `path` ({} when absent, or, with a warning unless
    `quiet`, when it is unreadable or of another schema)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        if not quiet:
            _warn(path, f"it cannot be read ({exc})")
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        if not quiet:
            _warn(path, f"it is not JSON ({exc})")
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION \
            or not isinstance(data.get("machines"), dict):
        if not quiet:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            _warn(path, f"it is not a {FORMAT} file of version {VERSION} (found {found!r})")
        return {}
    return dict(data["machines"])


def _warn(path: Path, why: str) -> None:
    warnings.warn(PycWarning(PycError(
        "E039", f"the tuning database is ignored: {why}", where=str(path),
        hint="delete it, or rerun `pyc build --tune` to replace it")), stacklevel=3)
