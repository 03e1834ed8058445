"""MySQL/MariaDB refuse any statement longer than the server's ``max_allowed_packet``.

The server's default (16 MB on MariaDB 10.x, 64 MB on MySQL 8) is smaller than some
values ledgerflow stores, and a refused statement often arrives as a dropped
connection.  So before a row is written its statement size is estimated as PyMySQL
will send it (UTF-8, quotes and backslashes escaped) and a row that would not fit
is refused with the reason and the fix; the transaction rolls back, so nothing of
the call is written.  The limit is read from each new connection's session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Engine, event

from ledgerflow.errors import StorageError

__all__ = ["PacketLimit", "packet_size"]

#: Room for the statement's own text and the other columns around the large values.
STATEMENT_OVERHEAD: Final = 64 * 1024
#: Characters PyMySQL escapes with a backslash (each costs one more byte).
_ESCAPED: Final = ("\\", "'", '"', "\n", "\r", "\x00", "\x1a")


def packet_size(row: Mapping[str, Any]) -> int:
    """Bytes the row's values take in an INSERT or UPDATE as PyMySQL sends it."""
    size = 0
    for value in row.values():
        if isinstance(value, str):
            if len(value) < 4096:  # small values: their room is in STATEMENT_OVERHEAD
                continue
            size += len(value.encode("utf-8", "surrogatepass")) + 2
            size += sum(value.count(char) for char in _ESCAPED)
        elif isinstance(value, bytes):
            size += 2 * len(value) + 3
    return size


class PacketLimit:
    """The server's ``max_allowed_packet`` as this backend's connections see it."""

    def __init__(self, engine: Engine, where: str) -> None:
        self.where = where
        #: Bytes; None until a connection has been opened.  Tests may lower it.
        self.limit: int | None = None
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT @@session.max_allowed_packet")
            self.limit = int(cursor.fetchone()[0])
        finally:
            cursor.close()

    def check(self, name: str, uuid: str, row: Mapping[str, Any]) -> None:
        """StorageError if the row's statement would exceed the server's limit."""
        limit = self.limit
        if limit is None:
            return
        size = packet_size(row)
        if size + STATEMENT_OVERHEAD <= limit:
            return
        columns = [
            key for key, value in row.items() if isinstance(value, str) and len(value) >= 4096
        ]
        raise StorageError(
            f"{name} {uuid} is too large for the server at {self.where}: its "
            f"{', '.join(columns) or 'values'} take {size / 2**20:.1f} MB in the statement, "
            f"above the server's max_allowed_packet of {limit / 2**20:.1f} MB; nothing was "
            "written. Raise the limit (SET GLOBAL max_allowed_packet=268435456, or "
            "max_allowed_packet=256M under [mysqld]) or store a smaller value"
        )
