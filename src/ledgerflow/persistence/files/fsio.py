"""Filesystem primitives of the file backend: durable atomic writes, locks, OS errors.

Every write goes to a temporary file in the target's own directory (so the rename
never crosses a filesystem), is fsynced, then ``os.replace``d over the target, and
the directory is fsynced so the new name itself survives a power loss.  With
``durable=False`` the fsyncs are skipped: a replace is still atomic, so a process
crash never tears a file, but the last writes may be lost if the machine dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from ledgerflow.errors import StorageError

#: Temporary files start and end with these; readers never look at them.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def os_errors(action: str, path: Path | str) -> Iterator[None]:
    """Turn an OSError into StorageError naming ``path`` (the OSError is the cause)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StorageError(f"file store: cannot {action} {path}: {reason}") from exc


def fsync_dir(path: Path) -> None:
    """Make the names in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once; fsync file and directory if ``durable``.

    Raises OSError; on failure the temporary file is removed and ``path`` is untouched.
    """
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb", closefd=True) as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def remove(path: Path) -> bool:
    """Unlink ``path``; False if it was already gone.  Raises other OSErrors."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def read_or_none(path: Path) -> bytes | None:
    """Return the bytes of ``path``, or None if it does not exist; StorageError otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"file store: cannot read {path}: {exc.strerror or exc}") from exc


def json_names(directory: Path) -> list[str]:
    """Names of the record documents in ``directory`` (temp files left out); [] if missing."""
    try:
        with os.scandir(directory) as entries:
            return [
                entry.name
                for entry in entries
                if entry.name.endswith(".json") and not entry.name.startswith(".")
            ]
    except FileNotFoundError:
        return []


def sweep_temp_files(directories: Iterable[Path]) -> None:
    """Delete temporary files a crashed writer left behind (call with the lock held)."""
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                stale = [
                    entry.path
                    for entry in entries
                    if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)
                ]
        except FileNotFoundError:
            continue
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class FileLock:
    """An flock on one file: shared for readers, exclusive for writers, across processes.

    Opened per transaction and closed after it: closing the descriptor releases the
    lock, and a fresh descriptor per transaction keeps a forked child from sharing
    (and so silently holding) its parent's lock.
    """

    def __init__(self, path: Path) -> None:
        # Read-only suffices for flock (either mode), so a read-only lock file still works.
        with os_errors("open the lock file", path):
            self._fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        self.path = path
        self.exclusive = False

    def acquire(self, *, exclusive: bool) -> None:
        """Block until the lock is held in the given mode (converting a held lock)."""
        with os_errors("lock", self.path):
            fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        self.exclusive = exclusive

    def close(self) -> None:
        """Release the lock."""
        try:
            # Explicitly: a child forked meanwhile holds a copy of this descriptor, and
            # closing ours alone would leave the lock held until the child exits.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
