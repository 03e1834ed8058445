"""Corrupting stored records for real: garbage written into SQL rows behind ledgerflow."""

from __future__ import annotations

import contextlib
import sqlite3

__all__ = ["NOT_A_TIME", "garble"]

#: Per SQL kind, a value its time column takes that is no time, and what lets it in:
#: SQLite takes any text; PostgreSQL's timestamptz 'infinity', which psycopg refuses to
#: load; MariaDB's DATETIME the zero date, outside the strict SQL mode.
NOT_A_TIME = {
    "sqlite": ("not a date", ()),
    "postgresql": ("infinity", ()),
    "mysql": ("0000-00-00", ("SET SESSION sql_mode=''",)),
}


def garble(
    uri: str,
    table: str,
    column: str,
    uuid: str,
    garbage: str = "{not json",
    setup: tuple[str, ...] = (),
) -> None:
    """Overwrite one column of one row with ``garbage``, outside ledgerflow."""
    if uri.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as db:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE uuid = ?", (garbage, uuid))
            db.commit()
        return
    import sqlalchemy as sa

    url = uri.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(url.replace("mysql://", "mysql+pymysql://"))
    with engine.begin() as conn:
        for statement in setup:
            conn.execute(sa.text(statement))
        conn.execute(
            sa.text(f"UPDATE {table} SET {column} = :g WHERE uuid = :u"), {"g": garbage, "u": uuid}
        )
    engine.dispose()
