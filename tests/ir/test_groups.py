"""connected_groups: the union-find the layout pass and the CUDA storage pass share."""

from __future__ import annotations

import itertools

from pyc_cli.ir.groups import connected_groups


def test_groups_follow_the_items_order_whatever_the_links_order() -> None:
    items = ["a", "b", "c", "d", "e", "f"]
    links = [("e", "b"), ("b", "a"), ("d", "f"), ("a", "zz")]  # "zz" is no item: ignored
    want = [["a", "b", "e"], ["c"], ["d", "f"]]
    for order in itertools.permutations(links):
        assert connected_groups(items, order) == want
    assert connected_groups(items, []) == [[i] for i in items]
