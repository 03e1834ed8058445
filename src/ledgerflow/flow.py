"""Flows: tasks (and other flows) arranged in order, without order, or as a graph."""

from __future__ import annotations

from typing import Union

from ledgerflow.task import Retry, Task

__all__ = ["Flow", "GraphFlow", "Item", "LinearFlow", "UnorderedFlow"]

Item = Union[Task, "Flow"]


class Flow:
    """A named collection of tasks and subflows; subclasses fix their order."""

    def __init__(self, name: str, *items: Item, retry: Retry | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a flow needs a non-empty name, not {name!r}")
        self.name = name
        self.retry = retry
        self.items: list[Item] = []
        self.add(*items)

    def add(self, *items: Item) -> Flow:
        """Append tasks or flows and return this flow."""
        for item in items:
            if not isinstance(item, Task | Flow):
                raise TypeError(
                    f"flow {self.name!r} takes tasks and flows, not {type(item).__name__}: {item!r}"
                )
            if item is self:
                raise ValueError(f"flow {self.name!r} cannot contain itself")
            self.items.append(item)
        return self

    def iter_tasks(self) -> list[Task]:
        """Every task in this flow and its subflows, depth first, in order added."""
        out: list[Task] = []
        for item in self.items:
            if isinstance(item, Flow):
                out.extend(item.iter_tasks())
            else:
                out.append(item)
        return out

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self.items)} items)>"


class LinearFlow(Flow):
    """Runs its items one after another, in the order added."""


class UnorderedFlow(Flow):
    """Runs its items in any order (in parallel with the parallel engine)."""


class GraphFlow(Flow):
    """Orders its items by what they require and provide, plus explicit links."""

    def __init__(self, name: str, *items: Item, retry: Retry | None = None) -> None:
        self.links: list[tuple[Item, Item]] = []
        super().__init__(name, *items, retry=retry)

    def link(self, before: Item, after: Item) -> GraphFlow:
        """Make ``after`` run only once ``before`` has finished; return this flow."""
        for item in (before, after):
            if not any(item is known for known in self.items):
                raise ValueError(f"{item!r} is not an item of graph flow {self.name!r}")
        self.links.append((before, after))
        return self
