"""Reading around corrupt records: what the read model (``history``) lists with.

A listing or view that fails because one record in it does not decode is read
again in smaller parts until each corrupt record stands alone, so one bad record
costs a few more queries, not the page: ``robust_page`` halves a page,
``per_item`` loads keys one by one, ``child_rows`` reads a parent's rows one by
one by their keys.  Each corrupt record is kept, in its place, as the
``CorruptRecordError`` naming it (``Corrupt`` for the views).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ledgerflow.errors import CorruptRecordError
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.records import PARENT_KEY, Kind, Row

__all__ = ["Corrupt", "child_rows", "in_place", "per_item", "robust_page"]

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Corrupt:
    """A record that does not load, in the place of a listing or view it would fill."""

    error: CorruptRecordError
    uuid: str | None = None
    name: str | None = None
    #: Its place among the records of its view (a flow's tasks), when known.
    position: int | None = None
    #: The uuid of the record it belongs to (a task's flow, a flow's book), when known.
    parent: str | None = None

    @property
    def message(self) -> str:
        """What is wrong, naming the record."""
        return str(self.error)

    def to_dict(self) -> dict[str, Any]:
        """``{"corrupt": message}`` with the uuid and name when they are known."""
        known = {"uuid": self.uuid, "name": self.name}
        return {**{k: v for k, v in known.items() if v is not None}, "corrupt": self.message}


def in_place(records: Sequence[T], entries: Iterable[Corrupt]) -> list[T | Corrupt]:
    """``records`` with each corrupt entry put back at its ``position`` among them."""
    merged: list[T | Corrupt] = list(records)
    for entry in sorted(entries, key=lambda c: c.position or 0):
        merged.insert(entry.position or 0, entry)
    return merged


def robust_page(
    fetch: Callable[[int, int | None], Sequence[T]], offset: int, limit: int | None, total: int
) -> list[T | CorruptRecordError]:
    """``fetch(offset, limit)``; if a corrupt record breaks it, each such record as its error.

    A page that fails to load is split in halves until each corrupt record stands
    alone, so one bad record costs a few more queries, not the listing.  ``total``
    (how many records match) bounds the page when ``limit`` is None.
    """
    try:
        return list(fetch(offset, limit))
    except CorruptRecordError:
        count = max(total - offset, 0) if limit is None else limit
        return _split(fetch, offset, count)


def _split(
    fetch: Callable[[int, int | None], Sequence[T]], offset: int, count: int
) -> list[T | CorruptRecordError]:
    if count <= 0:
        return []
    try:
        return list(fetch(offset, count))
    except CorruptRecordError as exc:
        if count == 1:
            return [exc]
        half = count // 2
        return _split(fetch, offset, half) + _split(fetch, offset + half, count - half)


def per_item(
    load: Callable[[Sequence[str]], dict[str, U]], keys: Sequence[str]
) -> dict[str, U | CorruptRecordError]:
    """``load(keys)``; if it fails on a corrupt record, each key loaded alone (errors kept)."""
    try:
        return dict(load(keys))
    except CorruptRecordError:
        out: dict[str, U | CorruptRecordError] = {}
        for key in keys:
            try:
                out.update(load([key]))
            except CorruptRecordError as exc:
                out[key] = exc
        return out


def child_rows(
    conn: RecordConnection, kind: Kind, parents: Sequence[str]
) -> list[tuple[str, str, Row | CorruptRecordError]]:
    """(parent uuid, uuid, row) of the ``kind`` rows under ``parents``, insertion order.

    The rows are fetched together; if a row that does not even fetch (a time column
    holding text, a record file that is not JSON) breaks that, each is fetched alone
    by its key and one that still fails stands as its error.
    """
    key = PARENT_KEY[kind]
    assert key is not None
    try:
        return [(row[key], row["uuid"], row) for row in conn._fetch_many(kind, parents=parents)]
    except CorruptRecordError:
        keys = conn._child_keys(kind, parents)

    def load(uuids: Sequence[str]) -> dict[str, Row]:
        return {row["uuid"]: row for row in conn._fetch_many(kind, uuids=uuids)}

    found = per_item(load, [uuid for _, uuid in keys])
    return [(parent, uuid, found[uuid]) for parent, uuid in keys if uuid in found]
