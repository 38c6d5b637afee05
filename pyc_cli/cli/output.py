"""What the CLI prints: text made safe for any terminal or stream (shared by its commands)."""

from __future__ import annotations

import click


def printable(text: object) -> str:
    """`text` with what a terminal or a strict UTF-8 stream cannot take escaped: paths given as
    undecodable bytes (lone surrogates) and control characters from model-provided names."""
    text = str(text)
    try:  # undecodable bytes of a path come back as the bytes, escaped (b"\xff" -> "\\xff")
        escaped = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in escaped)


def echo(text: object, err: bool = False) -> None:
    click.echo(printable(text), err=err)
