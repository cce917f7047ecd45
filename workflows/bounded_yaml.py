"""`yaml.safe_load` with limits on nesting depth and on size with aliases expanded.

`yaml.safe_load` shares one Python object between an anchor and its aliases, so a few hundred
bytes can stand for billions of values; everything that walks the result afterwards (pydantic,
JSON Schema, `json.dumps`, the database) walks them all. And PyYAML's composer recurses once
per nesting level, so deep input ends in a RecursionError.

The loader here watches the parser's events as the composer takes them, before it recurses
into a collection and before anything is constructed. Each anchor's expanded size and height
are recorded once, when its node ends, so an alias costs O(1) and the whole check is linear in
the text; it stops at the first limit crossed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class LimitExceeded(Exception):
    """`what` is "nodes", "depth" or "recursion"; `line` is 1-based."""

    def __init__(self, what: str, line: int):
        self.what = what
        self.line = line
        super().__init__(f"{what} limit exceeded at line {line}")


def safe_load(text: str, *, max_depth: int, max_nodes: int) -> Any:
    """Like `yaml.safe_load`, but raise LimitExceeded past either limit.

    Depth counts mappings and sequences: `{a: [1]}` is 2 deep, a lone scalar 0. Nodes count
    every key, value and item, once per use of an alias.
    """
    loader = _BoundedLoader(text, max_depth=max_depth, max_nodes=max_nodes)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    anchor: str | None
    nodes: int = 1  # itself, then its children's expanded sizes
    height: int = 0  # the tallest child's height


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, text: str, *, max_depth: int, max_nodes: int):
        super().__init__(text)
        self._max_depth = max_depth
        self._max_nodes = max_nodes
        self._total = 0
        self._open: list[_Open] = []
        # anchor -> (expanded nodes, height): what one alias of it adds.
        self._sizes: dict[str, tuple[int, int]] = {}

    def get_event(self) -> Any:
        # The composer takes every event through here, in document order.
        event = super().get_event()
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.CollectionStartEvent):
            self._count(1, 1, line)
            self._open.append(_Open(anchor=event.anchor))
        elif isinstance(event, yaml.CollectionEndEvent):
            node = self._open.pop()
            if node.anchor is not None:
                self._sizes[node.anchor] = (node.nodes, node.height + 1)
            self._join(node.nodes, node.height + 1)
        elif isinstance(event, yaml.ScalarEvent):
            self._count(1, 0, line)
            if event.anchor is not None:
                self._sizes[event.anchor] = (1, 0)
            self._join(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if any(node.anchor == event.anchor for node in self._open):
                # `&a [*a]`: an infinite structure, whatever the limits.
                raise LimitExceeded("recursion", line)
            # An undefined alias is left to the composer, which reports it as bad YAML.
            nodes, height = self._sizes.get(event.anchor or "", (1, 0))
            self._count(nodes, height, line)
            self._join(nodes, height)
        return event

    def _count(self, nodes: int, height: int, line: int) -> None:
        """Check a node about to be added under the open collections."""
        if len(self._open) + height > self._max_depth:
            raise LimitExceeded("depth", line)
        self._total += nodes
        if self._total > self._max_nodes:
            raise LimitExceeded("nodes", line)

    def _join(self, nodes: int, height: int) -> None:
        """A finished node adds its expanded size and height to its parent's."""
        if self._open:
            parent = self._open[-1]
            parent.nodes += nodes
            parent.height = max(parent.height, height)
