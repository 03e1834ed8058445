"""``file:///dir``: the row primitives of ``RecordConnection`` over a ``FileStore``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ledgerflow.errors import ConflictError, CorruptRecordError, NotFound, StorageError
from ledgerflow.persistence import care
from ledgerflow.persistence.base import Backend
from ledgerflow.persistence.files import documents, salvage
from ledgerflow.persistence.files.documents import NAMES, ShapeError
from ledgerflow.persistence.files.store import FileStore
from ledgerflow.persistence.listing import Cursor, DamagedRow, page_rows
from ledgerflow.persistence.primitives import RecordConnection
from ledgerflow.persistence.records import OWNERSHIP_COLUMNS, Kind, Row

_PARENT_KIND: dict[Kind, Kind] = {"flow": "book", "task": "flow"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Options a URI query or the options dict may carry.
OPTIONS = ("fsync", "synchronous")


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"file store option {name}={value!r}: expected true or false")


def parse_uri(uri: str, options: Mapping[str, Any]) -> tuple[Path, bool]:
    """Return (directory, durable) from ``file:///abs/dir[?fsync=false]`` and options."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        raise ValueError(f"not a file store URI: {uri!r}")
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"file store URI {uri!r} names host {parts.netloc!r}; use an absolute path: "
            "file:///path/to/dir"
        )
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise ValueError(f"file store URI {uri!r} needs an absolute directory: file:///path/to/dir")
    query = parse_qs(parts.query, keep_blank_values=True)
    settings: dict[str, Any] = {key: values[-1] for key, values in query.items()}
    settings.update(options)
    unknown = sorted(set(settings) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown file store option(s) {', '.join(unknown)} in {uri!r}; "
            f"known: {', '.join(OPTIONS)}"
        )
    durable = _flag("fsync", settings.get("fsync", True))
    if "synchronous" in settings:
        # The SQLite spelling API.md shows (?synchronous=normal) means the same here.
        level = str(settings["synchronous"]).lower()
        if level not in ("full", "normal"):
            raise ValueError(f"synchronous={level!r} in {uri!r}: expected one of full, normal")
        durable = level == "full"
    return Path(path), durable


class FileBackend(Backend):
    """A directory of JSON documents, one per record; several processes may share it.

    ``file:///path/to/dir`` is durable: every commit fsyncs the files and the
    directory, so it survives a power loss.  ``file:///path/to/dir?fsync=false``
    (or the option ``fsync=False``) skips the fsyncs: a commit still survives a
    crash of the process, but not of the machine.
    """

    schemes = ("file",)

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self.path, self.durable = parse_uri(uri, options)
        self._store = FileStore(self.path, durable=self.durable)

    def connect(self) -> FileConnection:
        """Open a connection to the store directory (nothing is created until a write)."""
        return FileConnection(self._store)


class FileConnection(RecordConnection):
    """Row primitives over one store directory."""

    fetch_chunk = 1_000_000

    def __init__(self, store: FileStore) -> None:
        self._store = store

    def upgrade(self) -> None:
        """Create the directory layout and FORMAT file; idempotent; SchemaVersionError if newer."""
        self._store.upgrade()

    def validate(self) -> None:
        """Raise SchemaVersionError unless the directory is an initialised store of this format."""
        self._store.validate()

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return _as_none(self._store.writing())

    def _snapshot(self) -> contextlib.AbstractContextManager[None]:
        # One shared flock for all the reads: a writer waits until they are done.
        return _as_none(self._store.reading())

    # ---- reading ------------------------------------------------------------------
    def _row(self, kind: Kind, uuid: str) -> Row | None:
        """The record ``uuid`` of ``kind`` (None if absent); CorruptRecordError naming its file."""
        row = self._read_row(kind, documents.record_path(kind, uuid), {"uuid": uuid})
        if isinstance(row, DamagedRow):
            raise row.error
        return row

    def _read_row(self, kind: Kind, relpath: str, known: dict[str, Any]) -> Row | None:
        """The record in file ``relpath``, a ``DamagedRow`` if it does not read, None if absent.

        ``known``: what its place tells of it (its uuid when a parent lists it, the parent).
        """
        document = None
        try:
            document = self._store.read(relpath)
            if document is None:
                return None
            row = documents.document_to_row(kind, document)
            if documents.record_path(kind, row["uuid"]) != relpath:
                raise ShapeError(f"it holds {row['uuid']!r:.80}")
        except ShapeError as exc:
            found = {**salvage.salvaged(kind, relpath, document), **known}
            uuid = found.get("uuid")
            what = f"{NAMES[kind]} {uuid!r}" if uuid else f"a {NAMES[kind]}"
            error = documents.corrupt(what, self._store.root / relpath, exc)
            return salvage.damaged_row(self._store.root, relpath, error, found)
        return row

    def _children(self, kind: Kind, parent: str) -> list[str]:
        relpath = documents.children_path(kind, parent)
        try:
            document = self._store.read(relpath)
            return [] if document is None else documents.document_children(kind, parent, document)
        except ShapeError as exc:
            what = f"the {NAMES[kind]} list of {NAMES[_PARENT_KIND[kind]]} {parent!r}"
            raise documents.corrupt(what, self._store.root / relpath, exc) from exc

    def _fetch(
        self, kind: Kind, *, uuids: Sequence[str] = (), parents: Sequence[str] = ()
    ) -> list[Row]:
        with self._store.reading():
            if parents:
                keys = [child for parent in parents for child in self._children(kind, parent)]
            else:
                keys = list(uuids)
            rows = (self._row(kind, uuid) for uuid in keys)
            # A child listed but without a record file is skipped: the record is the truth.
            return [row for row in rows if row is not None]

    def _book_rows(self) -> list[Row]:
        """Every book row, each file that does not read as a ``DamagedRow``."""
        found = (
            self._read_row("book", relpath, {})
            for relpath in self._store.names(documents.RECORD_DIRS["book"])
        )
        return [row for row in found if row is not None]

    def _listed_children(self, kind: Kind, parent: str) -> list[Row]:
        """The ``kind`` rows under ``parent``, each that does not read as a ``DamagedRow``.

        A child list that does not read stands as one ``DamagedRow`` for all of them.
        """
        key = documents.parent_key(kind)
        assert key is not None
        try:
            children = self._children(kind, parent)
        except CorruptRecordError as exc:
            relpath = documents.children_path(kind, parent)
            return [salvage.damaged_row(self._store.root, relpath, exc, {key: parent})]
        found = (
            self._read_row(kind, documents.record_path(kind, uuid), {"uuid": uuid, key: parent})
            for uuid in children
        )
        return [row for row in found if row is not None]

    def _flow_rows(self) -> list[Row]:
        """Every flow row, through the books' flow lists (so a broken book file hides none)."""
        rows: list[Row] = []
        with self._store.reading():
            for relpath in self._store.names(documents.CHILD_DIRS["flow"]):
                parent = self._list_parent(relpath)
                if parent is not None:
                    rows.extend(self._listed_children("flow", parent))
                    continue
                path = self._store.root / relpath
                error = documents.corrupt("a list of flow details", path, "it names no logbook")
                rows.append(salvage.damaged_row(self._store.root, relpath, error, {}))
        return rows

    def _list_parent(self, relpath: str) -> str | None:
        """The uuid of the parent whose child list is file ``relpath``, if it says so."""
        try:
            document = self._store.read(relpath)
        except ShapeError:
            return None
        parent = document.get("parent") if isinstance(document, dict) else None
        if not isinstance(parent, str) or documents.children_path("flow", parent) != relpath:
            return None
        return parent

    def _child_keys(self, kind: Kind, parents: Sequence[str]) -> list[tuple[str, str]]:
        with self._store.reading():
            return [(parent, uuid) for parent in parents for uuid in self._children(kind, parent)]

    def _has_flow_in(self, book_uuid: str, state: str) -> bool:
        return any(row.get("state") == state for row in self._listed_children("flow", book_uuid))

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
        with self._store.reading():
            books = self._book_rows()
            if name is not None:
                books = [row for row in books if row.get("name") == name]
            if state is not None:
                books = [row for row in books if self._has_flow_in(row["uuid"], state)]
        if prefix is not None:
            books = [row for row in books if row["uuid"].startswith(prefix)]
        if count_only:
            return len(books)
        return page_rows(books, limit=limit, offset=offset, newest_first=newest_first, after=after)

    def _scan(self, kind: Kind) -> Iterator[care.ScanItem]:
        """Every record file of ``kind``, read one at a time; ``where`` is the file's path."""
        with self._store.reading():
            relpaths = self._store.names(documents.RECORD_DIRS[kind])
            known = self._listed_uuids(kind)
            for relpath in relpaths:
                path = self._store.root / relpath
                try:
                    document = self._store.read(relpath)
                    if document is None:
                        continue
                    row = documents.document_to_row(kind, document)
                except (ShapeError, StorageError) as exc:
                    uuid = known.get(relpath)
                    yield f"file {path}", None if uuid is None else {"uuid": uuid}, str(exc)
                    continue
                if documents.record_path(kind, row["uuid"]) != relpath:
                    yield f"file {path}", row, f"it holds {row['uuid']!r:.80}, not its own record"
                    continue
                yield f"file {path}", row, None
            if kind != "book":
                yield from self._bad_child_lists(kind)

    def _listed_uuids(self, kind: Kind) -> dict[str, str]:
        """Record path -> uuid for the records the parents' child lists name (files are hashed)."""
        if kind == "book":
            return {}
        listed: dict[str, str] = {}
        for relpath in self._store.names(documents.CHILD_DIRS[kind]):
            try:
                document = self._store.read(relpath)
                uuids = document.get("children") if isinstance(document, dict) else None
            except (ShapeError, StorageError):
                continue
            for uuid in uuids if isinstance(uuids, list) else ():
                if isinstance(uuid, str):
                    listed[documents.record_path(kind, uuid)] = uuid
        return listed

    def _bad_child_lists(self, kind: Kind) -> Iterator[care.ScanItem]:
        """The lists of ``kind`` children that do not read (their parents will not load)."""
        for relpath in self._store.names(documents.CHILD_DIRS[kind]):
            try:
                document = self._store.read(relpath)
                parent = document.get("parent") if isinstance(document, dict) else None
                documents.document_children(kind, str(parent), document)
            except (ShapeError, StorageError) as exc:
                what = f"the list of {NAMES[kind]}s of a {NAMES[_PARENT_KIND[kind]]}"
                yield f"file {self._store.root / relpath}", None, f"{what} is corrupt: {exc}"

    # ---- writing ------------------------------------------------------------------
    def _insert(self, kind: Kind, rows: Sequence[Row]) -> None:
        parent_key = documents.parent_key(kind)
        with self._store.writing():
            added: dict[str, list[str]] = {}
            for row in rows:
                uuid = row["uuid"]
                relpath = documents.record_path(kind, uuid)
                if self._store.exists(relpath):
                    raise ConflictError(f"{NAMES[kind]} {uuid} was inserted by someone else")
                if parent_key is not None:
                    parent = row[parent_key]
                    parent_kind = _PARENT_KIND[kind]
                    if not self._store.exists(documents.record_path(parent_kind, parent)):
                        raise NotFound(
                            f"cannot add {NAMES[kind]} {uuid}: "
                            f"no {NAMES[parent_kind]} with uuid {parent!r}"
                        )
                    added.setdefault(parent, []).append(uuid)
                self._store.stage(relpath, documents.row_to_document(kind, row))
            for parent, new in added.items():
                children = self._children(kind, parent)
                known = set(children)
                children = children + [uuid for uuid in new if uuid not in known]
                self._store.stage(
                    documents.children_path(kind, parent),
                    documents.children_document(kind, parent, children),
                )

    def _update(self, kind: Kind, row: Row, expected_revision: int | None) -> int:
        uuid = row["uuid"]
        with self._store.writing():
            old = self._row(kind, uuid)
            if old is None:
                raise NotFound(f"no {NAMES[kind]} with uuid {uuid!r}")
            if expected_revision is not None and old["revision"] != expected_revision:
                raise ConflictError(
                    f"{NAMES[kind]} {uuid} is at revision {old['revision']}, "
                    f"the write was based on revision {expected_revision}"
                )
            new = {**row, "revision": old["revision"] + 1}
            parent_key = documents.parent_key(kind)
            if parent_key is not None:
                new[parent_key] = old[parent_key]
            if kind == "flow":  # written only by taking, renewing and letting go
                new.update({column: old[column] for column in OWNERSHIP_COLUMNS})
            self._store.stage(
                documents.record_path(kind, uuid), documents.row_to_document(kind, new)
            )
            return int(new["revision"])

    def _put_ownership(self, flow_uuid: str, values: dict[str, Any]) -> None:
        with self._store.writing():
            old = self._row("flow", flow_uuid)
            if old is None:
                raise NotFound(f"no flow detail with uuid {flow_uuid!r}")
            self._store.stage(
                documents.record_path("flow", flow_uuid),
                documents.row_to_document("flow", {**old, **values}),
            )

    def _delete_book(self, uuid: str) -> bool:
        with self._store.writing():
            if not self._store.exists(documents.record_path("book", uuid)):
                return False
            for flow in self._children("flow", uuid):
                for task in self._children("task", flow):
                    self._store.stage(documents.record_path("task", task), None)
                self._store.stage(documents.children_path("task", flow), None)
                self._store.stage(documents.record_path("flow", flow), None)
            self._store.stage(documents.children_path("flow", uuid), None)
            self._store.stage(documents.record_path("book", uuid), None)
            return True

    def _delete_tasks(self, flow_uuid: str, uuids: Sequence[str]) -> None:
        with self._store.writing():
            gone = set(uuids)
            for uuid in uuids:
                self._store.stage(documents.record_path("task", uuid), None)
            children = [uuid for uuid in self._children("task", flow_uuid) if uuid not in gone]
            self._store.stage(
                documents.children_path("task", flow_uuid),
                documents.children_document("task", flow_uuid, children),
            )

    def _clear(self) -> None:
        with self._store.writing():
            self._store.clear()


@contextlib.contextmanager
def _as_none(context: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
    with context:
        yield
