"""Compile a flow into a flat graph of task nodes with resolved inputs.

Two passes, both before any task runs: structure (duplicate names, cycles, the
edges between tasks) and then inputs (where every parameter of every task comes
from).  A task sees the symbols of tasks before it (LinearFlow) or linked to it
(GraphFlow) at its own level, then in each enclosing flow, innermost first; what
no task provides comes from the store.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledgerflow.errors import MissingInputsError
from ledgerflow.flow import Flow, GraphFlow, Item, LinearFlow
from ledgerflow.task import Retry, Task

__all__ = ["STORE", "Compiled", "Node", "RetryScope", "compile_flow"]

#: Provider index meaning "the store".
STORE = -1


@dataclass
class RetryScope:
    """A flow with ``retry``: its tasks are reverted and rerun together."""

    index: int
    name: str
    retry: Retry
    members: list[int] = field(default_factory=list)
    parent: int | None = None


@dataclass(slots=True)
class Node:
    """One task in the compiled graph."""

    index: int
    task: Task
    succs: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    #: parameter -> (provider node index or STORE, symbol)
    bindings: dict[str, tuple[int, str]] = field(default_factory=dict)
    scope: int | None = None
    path: list[tuple[_Level, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The task's name."""
        return self.task.name


@dataclass(slots=True)
class _Part:
    """A compiled item: its entry/exit tasks and its symbol interface."""

    sources: list[int]
    sinks: list[int]
    provides: dict[str, int]  # symbol -> node index of its last provider inside
    requires: set[str]
    label: list[str]  # task names, for cycle messages


@dataclass
class _Level:
    """A flow seen from its items: who provides what, for input resolution."""

    kind: type[Flow]
    parts: list[_Part]
    providers: dict[str, list[int]] = field(default_factory=dict)  # symbol -> item indices


@dataclass
class Compiled:
    """The flat graph the runners execute."""

    flow: Flow
    nodes: list[Node]
    by_name: dict[str, Node]
    scopes: list[RetryScope]


def compile_flow(flow: Flow, store_keys: Iterable[str] = ()) -> Compiled:
    """Check ``flow`` and turn it into nodes; ValueError / MissingInputsError if unusable."""
    if not isinstance(flow, Flow):
        raise TypeError(f"expected a flow, not {type(flow).__name__}: {flow!r}")
    _check_unique_names(flow)
    builder = _Builder()
    builder.build(flow, [], None)
    compiled = Compiled(flow, builder.nodes, builder.by_name, builder.scopes)
    _resolve_inputs(compiled, set(store_keys))
    return compiled


def _check_unique_names(flow: Flow) -> None:
    """Raise ValueError naming the first task name used twice (checked before cycles)."""
    seen: set[str] = set()
    stack: list[tuple[Flow, list[Flow]]] = [(flow, [])]
    while stack:
        current, outer = stack.pop()
        if any(current is o for o in outer):
            raise ValueError(f"flow {current.name!r} contains itself")
        for item in current.items:
            if isinstance(item, Flow):
                stack.append((item, [*outer, current]))
            elif item.name in seen:
                raise ValueError(f"duplicate task name {item.name!r} in flow {flow.name!r}")
            else:
                seen.add(item.name)


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.scopes: list[RetryScope] = []
        self.edges: set[tuple[int, int]] = set()
        self.active: list[Flow] = []

    def build(self, flow: Flow, path: list[tuple[_Level, int]], scope: int | None) -> _Part:
        if any(flow is outer for outer in self.active):
            raise ValueError(f"flow {flow.name!r} contains itself")
        self.active.append(flow)
        if flow.retry is not None:
            retry_scope = RetryScope(len(self.scopes), flow.name, flow.retry, parent=scope)
            self.scopes.append(retry_scope)
            scope = retry_scope.index
        level = _Level(type(flow), [])
        for position, item in enumerate(flow.items):
            level.parts.append(self._item(item, [*path, (level, position)], scope))
        for position, part in enumerate(level.parts):
            for symbol in part.provides:
                level.providers.setdefault(symbol, []).append(position)
        if not issubclass(level.kind, LinearFlow | GraphFlow):
            self._refuse_shared_symbols(flow, level)
        self.active.pop()
        if isinstance(flow, LinearFlow):
            return self._linear(level)
        if isinstance(flow, GraphFlow):
            return self._graph(flow, level)
        return _merge(level.parts, level.parts, level.parts, _outside_needs(level))

    def _item(self, item: Item, path: list[tuple[_Level, int]], scope: int | None) -> _Part:
        if isinstance(item, Flow):
            return self.build(item, path, scope)
        if item.name in self.by_name:
            raise ValueError(f"duplicate task name {item.name!r} in the flow")
        node = Node(len(self.nodes), item, scope=scope, path=path)
        self.nodes.append(node)
        self.by_name[item.name] = node
        s = scope
        while s is not None:
            self.scopes[s].members.append(node.index)
            s = self.scopes[s].parent
        needs = set(item.required_args.values()) | set(item.optional_args.values())
        provides = dict.fromkeys(item.provides_map, node.index)
        return _Part([node.index], [node.index], provides, needs, [item.name])

    def _link(self, before: _Part, after: _Part) -> None:
        for a in before.sinks:
            for b in after.sources:
                if (a, b) not in self.edges:
                    self.edges.add((a, b))
                    self.nodes[a].succs.append(b)
                    self.nodes[b].preds.append(a)

    def _linear(self, level: _Level) -> _Part:
        parts = [p for p in level.parts if p.sources]
        for before, after in itertools.pairwise(parts):
            self._link(before, after)
        if not parts:
            return _Part([], [], {}, set(), [])
        return _merge(level.parts, parts[:1], parts[-1:], _outside_needs(level))

    def _graph(self, flow: GraphFlow, level: _Level) -> _Part:
        parts = level.parts
        succs: list[set[int]] = [set() for _ in parts]
        for before, after in flow.links:
            a = next(i for i, it in enumerate(flow.items) if it is before)
            b = next(i for i, it in enumerate(flow.items) if it is after)
            if a == b:
                raise ValueError(f"graph flow {flow.name!r} links {_label(parts[a])} to itself")
            succs[a].add(b)
        for b, part in enumerate(parts):
            for symbol in sorted(part.requires):
                providers = [a for a in level.providers.get(symbol, ()) if a != b]
                if len(providers) > 1:
                    first, second = (self._provider(level, a, symbol) for a in providers[:2])
                    raise ValueError(
                        f"graph flow {flow.name!r}: {self._consumer(part, symbol)} could take "
                        f"{symbol!r} from both {first!r} and {second!r}; give one of them "
                        "another symbol (provides=, rebind=) or put them in a LinearFlow"
                    )
                for a in providers:
                    succs[a].add(b)
        _check_acyclic(flow, parts, succs)
        indegree = [0] * len(parts)
        for a, targets in enumerate(succs):
            for b in targets:
                indegree[b] += 1
                self._link(parts[a], parts[b])
        heads = [p for i, p in enumerate(parts) if indegree[i] == 0]
        tails = [p for i, p in enumerate(parts) if not succs[i]]
        return _merge(parts, heads, tails, _outside_needs(level))

    def _provider(self, level: _Level, position: int, symbol: str) -> str:
        return self.nodes[level.parts[position].provides[symbol]].name

    def _consumer(self, part: _Part, symbol: str) -> str:
        """'task NAME' of the task in ``part`` that needs ``symbol``."""
        for name in part.label:
            task = self.by_name[name].task
            if symbol in task.required_args.values() or symbol in task.optional_args.values():
                return f"task {name!r}"
        return f"{_label(part)!r}"

    def _refuse_shared_symbols(self, flow: Flow, level: _Level) -> None:
        """Items of an unordered flow run in any order: two may not provide one symbol."""
        for symbol, positions in level.providers.items():
            if len(positions) > 1:
                first, second = (self._provider(level, p, symbol) for p in positions[:2])
                raise ValueError(
                    f"unordered flow {flow.name!r}: {symbol!r} is provided by both {first!r} "
                    f"and {second!r}, which run in no particular order; give one of them "
                    "another symbol"
                )


def _outside_needs(level: _Level) -> set[str]:
    """Symbols the items of ``level`` take from outside it, as ``_find_provider`` decides.

    A symbol provided inside the level does not count as internal when no
    item that needs it can see that provider (a later item of a LinearFlow, a
    sibling in an UnorderedFlow): the enclosing flow must order its provider first.
    """
    needs: set[str] = set()
    for position, part in enumerate(level.parts):
        for symbol in part.requires:
            providers = level.providers.get(symbol, [])
            if issubclass(level.kind, LinearFlow):
                inside = any(p < position for p in providers)
            elif issubclass(level.kind, GraphFlow):
                inside = any(p != position for p in providers)
            else:
                inside = False
            if not inside:
                needs.add(symbol)
    return needs


def _merge(parts: list[_Part], heads: list[_Part], tails: list[_Part], requires: set[str]) -> _Part:
    provides: dict[str, int] = {}
    label: list[str] = []
    for part in parts:
        provides.update(part.provides)
        label.extend(part.label)
    return _Part(
        [i for p in heads for i in p.sources],
        [i for p in tails for i in p.sinks],
        provides,
        requires,
        label,
    )


def _label(part: _Part) -> str:
    return "+".join(part.label) or "(empty flow)"


def _check_acyclic(flow: GraphFlow, parts: list[_Part], succs: list[set[int]]) -> None:
    """Raise ValueError naming the tasks of a cycle among the items of ``flow``."""
    color = [0] * len(parts)  # 0 new, 1 on the stack, 2 done
    for start in range(len(parts)):
        if color[start]:
            continue
        stack: list[tuple[int, list[int]]] = [(start, sorted(succs[start]))]
        trail = [start]
        color[start] = 1
        while stack:
            current, todo = stack[-1]
            if not todo:
                color[current] = 2
                stack.pop()
                trail.pop()
                continue
            nxt = todo.pop()
            if color[nxt] == 1:
                cycle = [*trail[trail.index(nxt) :], nxt]
                names = " -> ".join(_label(parts[i]) for i in cycle)
                raise ValueError(f"cycle in graph flow {flow.name!r}: {names}")
            if color[nxt] == 0:
                color[nxt] = 1
                stack.append((nxt, sorted(succs[nxt])))
                trail.append(nxt)


def _find_provider(node: Node, symbol: str) -> int | None:
    """The node that provides ``symbol`` to ``node``, innermost scope first, or None."""
    for level, position in reversed(node.path):
        candidates = level.providers.get(symbol)
        if not candidates:
            continue
        if level.kind is LinearFlow or issubclass(level.kind, LinearFlow):
            k = bisect.bisect_left(candidates, position)
            if k:
                return level.parts[candidates[k - 1]].provides[symbol]
        elif issubclass(level.kind, GraphFlow):
            earlier = [c for c in candidates if c != position]
            if earlier:
                return level.parts[earlier[-1]].provides[symbol]
    return None


def _resolve_inputs(compiled: Compiled, store_keys: set[str]) -> None:
    missing: dict[str, list[str]] = {}
    for node in compiled.nodes:
        task = node.task
        for args, required in ((task.required_args, True), (task.optional_args, False)):
            for param, symbol in args.items():
                provider = _find_provider(node, symbol)
                if provider is not None:
                    node.bindings[param] = (provider, symbol)
                elif symbol in store_keys:
                    node.bindings[param] = (STORE, symbol)
                elif required:
                    missing.setdefault(task.name, []).append(symbol)
    if missing:
        raise MissingInputsError(missing)
