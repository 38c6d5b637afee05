"""Protobuf wire format as a tree, for mutating serialized models below the schema level.

A message is a list of `Field`s; a length-delimited payload that parses cleanly as a message is
kept as children, so a mutation deep inside (duplicating a node's attribute, deleting a dim) is
re-serialized with every enclosing length fixed up. Raw-byte mutations (bit flips, truncation)
work on `boundaries()`: the offsets where a field's tag, length, payload or end lie.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
MAX_DEPTH = 12


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class Field:
    number: int
    wire: int
    value: int | bytes = 0          # varint value, fixed bytes, or raw payload of LEN
    children: list[Field] | None = None  # LEN payload parsed as a message
    spans: tuple[int, int, int, int] = (0, 0, 0, 0)  # tag, length, payload, end offsets
    path: tuple[int, ...] = field(default=())


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse(data: bytes, base: int = 0, depth: int = 0, path: tuple[int, ...] = ()) -> list[Field]:
    """The fields of one message (nested messages where payloads parse as such)."""
    fields, pos = [], 0
    while pos < len(data):
        tag_at = pos
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        length_at = pos
        if wire == VARINT:
            value, pos = read_varint(data, pos)
            fields.append(Field(number, wire, value, None, (tag_at, length_at, length_at, pos), path))
            continue
        size = {FIXED64: 8, FIXED32: 4}.get(wire)
        if size is None and wire != LEN:
            raise WireError(f"wire type {wire}")
        if wire == LEN:
            size, pos = read_varint(data, pos)
        if pos + size > len(data):
            raise WireError("payload beyond end")
        payload = data[pos:pos + size]
        item = Field(number, wire, payload, None, (tag_at, length_at, pos, pos + size), path)
        if wire == LEN:
            item.children = _maybe_message(payload, base + pos, depth, path + (len(fields),))
        fields.append(item)
        pos += size
    return fields


def _maybe_message(payload: bytes, base: int, depth: int, path: tuple[int, ...]) -> list[Field] | None:
    if not payload or depth >= MAX_DEPTH:
        return None
    try:
        children = parse(payload, base, depth + 1, path)
    except WireError:
        return None
    if any(c.number > 1000 for c in children):
        return None  # most likely a string or packed data that happened to parse
    for child in children:
        child.spans = tuple(s + base for s in child.spans)  # type: ignore[assignment]
    return children


def serialize(fields: list[Field]) -> bytes:
    out = bytearray()
    for item in fields:
        out += encode_varint((item.number << 3) | item.wire)
        if item.wire == VARINT:
            out += encode_varint(int(item.value))  # type: ignore[arg-type]
        elif item.wire == LEN:
            payload = serialize(item.children) if item.children is not None else bytes(item.value)
            out += encode_varint(len(payload)) + payload
        else:
            out += bytes(item.value)  # type: ignore[arg-type]
    return bytes(out)


def walk(fields: list[Field]) -> list[tuple[list[Field], int]]:
    """Every field as (the list holding it, its index), depth first."""
    found = []
    for index, item in enumerate(fields):
        found.append((fields, index))
        if item.children is not None:
            found += walk(item.children)
    return found


def boundaries(fields: list[Field]) -> dict[str, list[int]]:
    """Byte offsets by kind: 'tag', 'length', 'payload', 'end', 'mid' (inside a payload)."""
    kinds: dict[str, list[int]] = {"tag": [], "length": [], "payload": [], "end": [], "mid": []}
    for holder, index in walk(fields):
        tag, length, payload, end = holder[index].spans
        kinds["tag"].append(tag)
        kinds["length"].append(length)
        kinds["payload"].append(payload)
        kinds["end"].append(end)
        if end - payload > 1:
            kinds["mid"].append((payload + end) // 2)
    return kinds
