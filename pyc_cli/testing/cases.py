"""One malformed-input case: the files of a sandbox and the `pyc` commands to run in it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    """`files`/`links` are relative to the sandbox's work directory (the commands' cwd); a path
    starting with ../ lies outside it, in the sandbox root. Commands may write only under
    `writable` (same convention) and $TMPDIR. `expect` (first command only): None accepts
    success or any PYC error; "error" demands a PYC error; "E031" demands that code.
    `reference`: (input name, output name) of the mlp model; after a successful build the
    artifact is run and its output compared with numpy. Commands run in turn, each checked on
    its own (a failed build does not stop the `pyc check` after it)."""

    name: str
    commands: list[list[str]]
    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    writable: tuple[str, ...] = ()
    expect: str | None = None
    reference: tuple[str, str] | None = None
    artifact: bool = False  # start from a copy of the base artifact at work/art
    prepare: Callable[[Path], None] | None = None  # last setup step, given the work directory
