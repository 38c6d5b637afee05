"""Connected groups of items joined by links (union-find): the layout pass's regions of
blockable nodes, the CUDA target's storage groups of values that share bytes."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def connected_groups(items: Sequence[T], links: Iterable[tuple[T, T]]) -> list[list[T]]:
    """`items` joined into groups by `links` (pairs of items; a link naming anything else is
    ignored): each group in the order of `items`, the groups in the order of their first item,
    so the result does not depend on the order of the links."""
    parent: dict[T, T] = {item: item for item in items}

    def find(item: T) -> T:
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # paths halved
            item = parent[item]
        return item

    for a, b in links:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    groups: dict[T, list[T]] = {}
    for item in items:
        groups.setdefault(find(item), []).append(item)
    return list(groups.values())
