"""Transactions over one store directory: locks, staged writes, the write-ahead journal.

A write transaction holds the in-process lock and an exclusive flock on ``lock``;
its writes are staged in memory (so a failed transaction writes nothing) and
committed at the end:

* one document: a single atomic replace, no journal (``os.replace`` of one file
  is already all or nothing);
* several documents: first ``journal.json`` holding every document is written
  atomically (and fsynced), then each file is replaced, then the journal is
  removed.  A crash before the journal lands leaves nothing; after it, whoever
  next takes the lock (reader or writer) replays the journal before anything
  else, so the transaction lands whole.

Readers take a shared flock, so they never see a half-applied journal.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledgerflow.errors import CorruptRecordError, SchemaVersionError
from ledgerflow.persistence.files import documents, fsio
from ledgerflow.persistence.files.documents import FORMAT_VERSION


class Transaction:
    """Documents staged by a write transaction (None = delete), read back before disk."""

    def __init__(self, *, write: bool, empty: bool = False) -> None:
        self.write = write
        #: True for a read of a store that does not exist yet: every file is absent.
        self.empty = empty
        #: True once the transaction deleted every record (clear_all).
        self.cleared = False
        self.staged: dict[str, Any] = {}


class FileStore:
    """One store directory shared by every connection of a backend."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.durable = durable
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._local = threading.local()
        self._swept = False

    # ---- paths ------------------------------------------------------------------
    @property
    def format_path(self) -> Path:
        """The FORMAT document."""
        return self.root / documents.FORMAT_FILE

    @property
    def journal_path(self) -> Path:
        """The write-ahead journal of multi-record commits."""
        return self.root / documents.JOURNAL_FILE

    def _data_dirs(self) -> list[Path]:
        return [self.root / name for name in documents.DATA_DIRS]

    # ---- in-process locking -----------------------------------------------------
    def _forget_parent(self) -> None:
        if os.getpid() != self._pid:
            # A forked child must neither inherit a lock some parent thread held at fork
            # time nor join the parent's open transaction (its flock is the parent's).
            self._pid, self._lock, self._local = os.getpid(), threading.RLock(), threading.local()

    def _thread_lock(self) -> threading.RLock:
        self._forget_parent()
        return self._lock

    @property
    def current(self) -> Transaction | None:
        """The transaction this thread is inside, if any."""
        self._forget_parent()
        return getattr(self._local, "txn", None)

    @contextlib.contextmanager
    def _enter(self, txn: Transaction) -> Iterator[Transaction]:
        self._local.txn = txn
        try:
            yield txn
        finally:
            self._local.txn = None

    # ---- format -----------------------------------------------------------------
    def format_version(self) -> int | None:
        """The stored format version, None if the store is not initialised."""
        data = fsio.read_or_none(self.format_path)
        if data is None:
            return None
        try:
            return documents.format_version(documents.decode(data))
        except documents.ShapeError as exc:
            raise SchemaVersionError(
                f"{self.format_path} is not a ledgerflow file store FORMAT file: {exc}"
            ) from exc

    def _check_not_newer(self) -> int | None:
        version = self.format_version()
        if version is not None and version > FORMAT_VERSION:
            raise SchemaVersionError(
                f"the file store {self.root} has format version {version}, newer than "
                f"{FORMAT_VERSION} which this ledgerflow understands; upgrade ledgerflow "
                "(nothing was changed)"
            )
        return version

    def validate(self) -> None:
        """Raise SchemaVersionError unless the store is initialised at this format."""
        version = self._check_not_newer()
        if version is None:
            raise SchemaVersionError(
                f"{self.root} is not an initialised ledgerflow file store (no "
                f"{documents.FORMAT_FILE} file); run `ledgerflow upgrade`"
            )
        for directory in self._data_dirs():
            if not directory.is_dir():
                raise SchemaVersionError(
                    f"the file store {self.root} lacks {directory.name}/; run `ledgerflow upgrade`"
                )

    def upgrade(self) -> None:
        """Create the layout, finish a crashed commit, remove stray temp files; idempotent."""
        self._swept = False
        with self.writing():
            pass

    def _create_root(self) -> None:
        """Create the store directory and its missing parents, durably."""
        with fsio.os_errors("create", self.root):
            missing = [path for path in (self.root, *self.root.parents) if not path.exists()]
            if not missing:
                return
            self.root.mkdir(parents=True, exist_ok=True)
            if self.durable:
                for path in reversed(missing):
                    fsio.fsync_dir(path.parent)

    def _initialise(self) -> None:
        """Create what is missing of the layout; the exclusive lock is held."""
        created = False
        for directory in self._data_dirs():
            with fsio.os_errors("create", directory):
                if not directory.is_dir():
                    directory.mkdir(exist_ok=True)
                    created = True
        if self.format_version() is None:
            with fsio.os_errors("write", self.format_path):
                data = documents.encode(documents.format_document())
                fsio.write_atomic(self.format_path, data, durable=self.durable, sync_dir=False)
            created = True
        if created and self.durable:
            with fsio.os_errors("sync", self.root):
                fsio.fsync_dir(self.root)

    # ---- transactions -----------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A consistent view: the enclosing transaction, or a shared lock of its own."""
        txn = self.current
        if txn is not None:
            yield txn
            return
        with self._thread_lock():
            if self._check_not_newer() is None:
                # Nothing stored, and a read must not create the directory or lock file.
                with self._enter(Transaction(write=False, empty=True)) as txn:
                    yield txn
                return
            lock = fsio.FileLock(self.root / documents.LOCK_FILE)
            try:
                lock.acquire(exclusive=False)
                with fsio.os_errors("look up", self.journal_path):
                    leftover = self.journal_path.exists()
                if leftover:
                    lock.acquire(exclusive=True)
                    self._recover()
                with self._enter(Transaction(write=False)) as txn:
                    yield txn
            finally:
                lock.close()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Transaction]:
        """A write transaction (nested ones join the outermost); commits on success."""
        txn = self.current
        if txn is not None:
            if not txn.write:
                raise RuntimeError("a file-store write cannot start inside a read")
            yield txn
            return
        with self._thread_lock():
            self._check_not_newer()  # before creating anything
            self._create_root()
            lock = fsio.FileLock(self.root / documents.LOCK_FILE)
            try:
                lock.acquire(exclusive=True)
                self._check_not_newer()  # someone may have upgraded meanwhile
                self._initialise()
                self._recover()
                if not self._swept:
                    # Once per backend (and on upgrade): a scan of every directory is too
                    # slow for each commit, and readers ignore these files anyway.
                    with fsio.os_errors("clean up", self.root):
                        fsio.sweep_temp_files([self.root, *self._data_dirs()])
                    self._swept = True
                with self._enter(Transaction(write=True)) as txn:
                    yield txn
                    self._commit(txn)
            finally:
                lock.close()

    # ---- reading and staging documents --------------------------------------------
    def read(self, relpath: str) -> Any | None:
        """The document at ``relpath`` as the current transaction sees it, or None if absent.

        Raises ShapeError if the file is not JSON.  Staged documents are returned as
        they are: callers build new rows from them and never mutate them.
        """
        txn = self.current
        if txn is not None:
            if relpath in txn.staged:
                return txn.staged[relpath]
            if txn.empty or txn.cleared:
                return None
        data = fsio.read_or_none(self.root / relpath)
        return None if data is None else documents.decode(data)

    def exists(self, relpath: str) -> bool:
        """Tell whether a document exists as the current transaction sees it."""
        txn = self.current
        if txn is not None:
            if relpath in txn.staged:
                return txn.staged[relpath] is not None
            if txn.empty or txn.cleared:
                return False
        with fsio.os_errors("look up", self.root / relpath):
            return (self.root / relpath).exists()

    def names(self, directory: str) -> list[str]:
        """Relative paths of the documents in ``directory`` (staged ones included)."""
        txn = self.current
        found: dict[str, None] = {}
        if txn is None or not (txn.empty or txn.cleared):
            with fsio.os_errors("list", self.root / directory):
                for name in fsio.json_names(self.root / directory):
                    found[f"{directory}/{name}"] = None
        if txn is not None:
            prefix = directory + "/"
            for relpath, document in txn.staged.items():
                if relpath.startswith(prefix):
                    if document is None:
                        found.pop(relpath, None)
                    else:
                        found[relpath] = None
        return list(found)

    def stage(self, relpath: str, document: Any) -> None:
        """Write (or with None delete) a document when the current transaction commits."""
        txn = self.current
        if txn is None or not txn.write:
            raise RuntimeError("file-store writes need a write transaction")
        txn.staged[relpath] = document

    def clear(self) -> None:
        """Delete every record when the current transaction commits."""
        txn = self.current
        if txn is None or not txn.write:
            raise RuntimeError("file-store writes need a write transaction")
        txn.cleared = True
        txn.staged.clear()

    # ---- committing ---------------------------------------------------------------
    def _commit(self, txn: Transaction) -> None:
        if not txn.staged and not txn.cleared:
            return
        if len(txn.staged) == 1 and not txn.cleared:
            ((relpath, document),) = txn.staged.items()
            self._apply_one(relpath, document, sync_dir=True)
            return
        journal = {
            "format": FORMAT_VERSION,
            "clear": txn.cleared,
            "writes": [[relpath, document] for relpath, document in txn.staged.items()],
        }
        with fsio.os_errors("write", self.journal_path):
            fsio.write_atomic(self.journal_path, documents.encode(journal), durable=self.durable)
        self._apply(journal)

    def _apply_one(self, relpath: str, document: Any, *, sync_dir: bool) -> None:
        path = self.root / relpath
        if document is None:
            with fsio.os_errors("delete", path):
                fsio.remove(path)
                if sync_dir and self.durable:
                    fsio.fsync_dir(path.parent)
            return
        with fsio.os_errors("write", path):
            fsio.write_atomic(
                path, documents.encode(document), durable=self.durable, sync_dir=sync_dir
            )

    def _apply(self, journal: dict[str, Any]) -> None:
        """Carry out a journal (idempotent: replaying it after a crash is safe)."""
        touched: set[Path] = set()
        if journal["clear"]:
            for directory in self._data_dirs():
                with fsio.os_errors("clear", directory):
                    for name in os.listdir(directory):
                        fsio.remove(directory / name)
                touched.add(directory)
        for relpath, document in journal["writes"]:
            self._apply_one(relpath, document, sync_dir=False)
            touched.add((self.root / relpath).parent)
        if self.durable:
            for directory in sorted(touched):
                with fsio.os_errors("sync", directory):
                    fsio.fsync_dir(directory)
        with fsio.os_errors("remove", self.journal_path):
            fsio.remove(self.journal_path)
            if self.durable:
                fsio.fsync_dir(self.root)

    def _recover(self) -> None:
        """Replay the journal a crashed commit left behind; the exclusive lock is held."""
        data = fsio.read_or_none(self.journal_path)
        if data is None:
            return
        try:
            journal = _check_journal(documents.decode(data))
        except documents.ShapeError as exc:
            # Written atomically, so this is outside damage: refuse rather than guess.
            raise CorruptRecordError(
                f"the journal {self.journal_path} of an interrupted commit is corrupt ({exc}); "
                "move it away to use the store (that commit is then lost)"
            ) from exc
        with fsio.os_errors("clean up", self.root):
            fsio.sweep_temp_files([self.root, *self._data_dirs()])
        self._apply(journal)


def _check_journal(journal: Any) -> dict[str, Any]:
    if not isinstance(journal, dict) or not isinstance(journal.get("clear"), bool):
        raise documents.ShapeError("not a journal document")
    if journal.get("format") != FORMAT_VERSION:
        raise documents.ShapeError(f"unknown journal format {journal.get('format')!r}")
    writes = journal.get("writes")
    if not isinstance(writes, list) or not all(
        isinstance(w, list) and len(w) == 2 and documents.is_data_path(w[0]) for w in writes
    ):
        raise documents.ShapeError("'writes' must list [path, document] pairs of the store")
    return journal
