"""``memory://``: a thread-safe store in this process's memory.

Rows hold only immutable values (user data is JSON text), so nothing a caller
holds can reach stored state, and every read builds fresh models.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from typing import Any

from ledgerflow.errors import ConflictError, NotFound
from ledgerflow.persistence.base import Backend, Fence, fenced_out
from ledgerflow.persistence.listing import Cursor, page_rows
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.records import OWNERSHIP_COLUMNS, PARENT_KEY, Kind, Row

KINDS: tuple[Kind, ...] = ("book", "flow", "task")


class _Store:
    """The rows, a parent -> children index, and the lock that guards both."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rows: dict[Kind, dict[str, Row]] = {kind: {} for kind in KINDS}
        self.children: dict[Kind, dict[str, dict[str, None]]] = {kind: {} for kind in KINDS}
        self.local = threading.local()

    @property
    def undo(self) -> list[Callable[[], None]] | None:
        return getattr(self.local, "undo", None)


_TIME_COLUMNS = ("created_at", "updated_at", "started_at", "finished_at", "lease_expires_at")


def _utc(row: Row) -> Row:
    """A copy of ``row`` with its times in UTC, as every other backend stores them.

    A naive time is taken as UTC (what the SQL and file backends read back).
    """
    out = dict(row)
    for column in _TIME_COLUMNS:
        value = out.get(column)
        if value is None:
            continue
        if value.tzinfo is not UTC:
            out[column] = (
                value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            )
    return out


class _Transaction:
    """All or nothing under the store's lock: an undo log replayed if the block raises.

    A class rather than a generator: the engine opens three per commit (the commit and,
    nested, each row's update), and a generator-based context costs several times more.
    """

    __slots__ = ("_outermost", "_store")

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._outermost = False

    def __enter__(self) -> None:
        store = self._store
        store.lock.acquire()
        if store.undo is None:  # nested: the outermost transaction owns the undo log
            store.local.undo = []
            self._outermost = True

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        store = self._store
        try:
            if self._outermost:
                undo, store.local.undo = store.local.undo, None
                if exc_type is not None:
                    for step in reversed(undo):
                        step()
        finally:
            store.lock.release()


class MemoryBackend(Backend):
    """Keeps every record in memory; lost when the process ends."""

    schemes = ("memory",)

    def __init__(self, uri: str = "memory://", **options: Any) -> None:
        super().__init__(uri, **options)
        if options or "?" in uri:
            unknown = sorted(options) or [uri.partition("?")[2]]
            raise ValueError(f"memory:// takes no options, got {', '.join(unknown)}")
        self._store = _Store()

    def connect(self) -> MemoryConnection:
        """Open a connection to this backend's store."""
        return MemoryConnection(self._store)


class MemoryConnection(RecordConnection):
    """The row primitives over a ``_Store``."""

    fetch_chunk = 1_000_000

    def __init__(self, store: _Store) -> None:
        self._s = store

    def upgrade(self) -> None:
        """Nothing to create: memory has no schema."""

    def validate(self) -> None:
        """A memory store is always usable."""

    def _transaction(self) -> _Transaction:
        return _Transaction(self._s)

    def _log(self, step: Callable[[], None]) -> None:
        undo = self._s.undo
        if undo is not None:
            undo.append(step)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        with self._s.lock:  # writers take the same lock: nothing commits until we are done
            yield

    def _fetch(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        with self._s.lock:
            table = self._s.rows[kind]
            if parents:
                index = self._s.children[kind]
                keys = [key for parent in parents for key in index.get(parent, ())]
            else:
                keys = [key for key in uuids if key in table]
            return [dict(table[key]) for key in keys]

    def _list_books(
        self,
        *,
        limit: int | None,
        offset: int,
        name: str | None,
        state: str | None,
        newest_first: bool,
        count_only: bool = False,
        after: Cursor | None = None,
        prefix: str | None = None,
    ) -> list[Row] | int:
        with self._s.lock:
            books = list(self._s.rows["book"].values())
            if name is not None:
                books = [row for row in books if row["name"] == name]
            if state is not None:
                flows = self._s.rows["flow"]
                wanted = {row["book_uuid"] for row in flows.values() if row["state"] == state}
                books = [row for row in books if row["uuid"] in wanted]
            if prefix is not None:
                books = [row for row in books if row["uuid"].startswith(prefix)]
            if count_only:
                return len(books)
            kept = page_rows(
                books, limit=limit, offset=offset, newest_first=newest_first, after=after
            )
            return [dict(row) for row in kept]

    def _insert(self, kind: Kind, rows: Sequence[Row]) -> None:
        with self._transaction():
            table = self._s.rows[kind]
            parent_key = PARENT_KEY[kind]
            for row in rows:
                uuid = row["uuid"]
                if uuid in table:
                    raise ConflictError(f"{kind} {uuid} was inserted by someone else")
                parent = None if parent_key is None else row[parent_key]
                if parent_key is not None and parent not in self._s.rows[_PARENT_KIND[kind]]:
                    raise NotFound(f"cannot add {kind} {uuid}: parent {parent!r} does not exist")
                table[uuid] = _utc(row)
                if parent is not None:
                    self._s.children[kind].setdefault(parent, {})[uuid] = None
                self._log(functools.partial(self._forget, kind, uuid, parent))

    def _forget(self, kind: Kind, uuid: str, parent: str | None) -> None:
        self._s.rows[kind].pop(uuid, None)
        if parent is not None:
            self._s.children[kind].get(parent, {}).pop(uuid, None)

    def _update(self, kind: Kind, row: Row, expected_revision: int | None) -> int:
        with self._transaction():
            table = self._s.rows[kind]
            old = table.get(row["uuid"])
            if old is None:
                raise NotFound(f"no {_NAMES[kind]} with uuid {row['uuid']!r}")
            if expected_revision is not None and old["revision"] != expected_revision:
                raise ConflictError(
                    f"{_NAMES[kind]} {row['uuid']} is at revision {old['revision']}, "
                    f"the write was based on revision {expected_revision}"
                )
            parent_key = PARENT_KEY[kind]
            new = _utc(row)  # a copy: the caller's row stays as it was
            new["revision"] = old["revision"] + 1
            if parent_key is not None:
                new[parent_key] = old[parent_key]
            if kind == "flow":  # written only by taking, renewing and letting go
                new.update({column: old[column] for column in OWNERSHIP_COLUMNS})
            table[row["uuid"]] = new
            self._log(lambda: table.__setitem__(row["uuid"], old))
            return int(new["revision"])

    def _fence(self, fence: Fence) -> None:
        """Check the flow row's fence in place (the base reads a copy of the whole row)."""
        flow_uuid, expected = fence
        with self._s.lock:
            row = self._s.rows["flow"].get(flow_uuid)
            if row is None:
                raise NotFound(f"no flow detail with uuid {flow_uuid!r}")
            if row["fence"] != expected:
                raise fenced_out(flow_uuid, expected, row["fence"])

    def _put_ownership(self, flow_uuid: str, values: dict[str, Any]) -> None:
        table = self._s.rows["flow"]
        old = table[flow_uuid]
        table[flow_uuid] = _utc({**old, **values})
        self._log(lambda: table.__setitem__(flow_uuid, old))

    def _delete_book(self, uuid: str) -> bool:
        with self._transaction():
            if uuid not in self._s.rows["book"]:
                return False
            rows, children = self._s.rows, self._s.children
            flow_index = children["flow"].pop(uuid, {})
            task_indexes = {flow: children["task"].pop(flow, {}) for flow in flow_index}
            removed: list[tuple[Kind, str, Row]] = [("book", uuid, rows["book"].pop(uuid))]
            for flow, task_index in task_indexes.items():
                removed.append(("flow", flow, rows["flow"].pop(flow)))
                removed.extend(("task", task, rows["task"].pop(task)) for task in task_index)

            def undo() -> None:
                # Only what this delete removed goes back: an undo proportional to the book.
                for kind, key, row in removed:
                    rows[kind][key] = row
                children["flow"][uuid] = flow_index
                children["task"].update(task_indexes)

            self._log(undo)
            return True

    def _delete_tasks(self, flow_uuid: str, uuids: Sequence[str]) -> None:
        with self._transaction():
            rows, children = self._s.rows["task"], self._s.children["task"]
            index = children.get(flow_uuid, {})
            before = dict(index)
            removed = {uuid: rows.pop(uuid) for uuid in uuids}
            for uuid in uuids:
                index.pop(uuid, None)

            def undo() -> None:
                rows.update(removed)
                children[flow_uuid] = before

            self._log(undo)

    def _restore(
        self, rows: dict[Kind, dict[str, Row]], children: dict[Kind, dict[str, dict[str, None]]]
    ) -> None:
        self._s.rows = rows
        self._s.children = children

    def _clear(self) -> None:
        with self._transaction():
            saved = (self._s.rows, self._s.children)
            self._s.rows = {kind: {} for kind in KINDS}
            self._s.children = {kind: {} for kind in KINDS}
            self._log(lambda: self._restore(*saved))


_PARENT_KIND: dict[Kind, Kind] = {"flow": "book", "task": "flow"}
_NAMES: dict[Kind, str] = {"book": "logbook", "flow": "flow detail", "task": "task detail"}
