"""PostgreSQL: an engine's fenced commit as one autocommitted statement.

A commit of the engine (a few task rows, perhaps the flow's row, new task rows, the
release at the end) is otherwise BEGIN, one statement per row and COMMIT: a round trip
each.  Here it is one statement: each row's write is a data-modifying CTE, and the
statement's own SELECT divides by the number of rows each one wrote, so that a write
that found nothing to change (a fence or revision that no longer holds, a row gone)
raises ``division_by_zero`` and the statement, its own transaction, changes nothing.
Only then is the commit run again the ordinary way, which tells which of these it was.

Every write is gated on the fence: the flow's own UPDATE has it in its WHERE (its row
lock waits for a taker's take, then rechecks the fence it committed); without one, a
``FOR SHARE`` lock of the flow row does the same.  The CTEs run with one snapshot and
cannot see each other's changes, so the task rows read the gate's output, never the
flow row itself: a CTE that updated it would hide it from their lock.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import bindparam

from ledgerflow.models import FlowDetail, TaskDetail
from ledgerflow.persistence import records
from ledgerflow.persistence.base import Fence, _check_commit
from ledgerflow.persistence.ownership import OwnChange
from ledgerflow.persistence.records import COLUMNS, Kind, Row
from ledgerflow.persistence.sql.statements import SETTABLE, release_values
from ledgerflow.persistence.sql.tables import FLOWS, TABLES, TASKS
from ledgerflow.persistence.sql.transactions import SQLTransactions

__all__ = ["OneStatementCommits", "Write", "build", "params"]

#: One row's write: ("update", kind, revision checked, release) or ("insert", "task").
#: ``release`` (the flow's row only): None, or whether the release clears a cancel.
Write = tuple[str, Kind, bool, bool | None]
#: The SQLSTATE of ``division_by_zero``: a write of the statement found nothing to change.
NOTHING_WRITTEN: Final = "22012"


def _gate(writes: Sequence[Write]) -> tuple[sa.CTE | None, sa.ColumnElement[bool]]:
    """(the flow row's write, if any; the condition each task write carries): the fence."""
    for index, (op, kind, checked, release) in enumerate(writes):
        if op == "update" and kind == "flow":
            flow = _update(index, "flow", checked, release, None)
            return flow, sa.exists(sa.select(sa.literal_column("1")).select_from(flow))
    lock = (
        sa.select(FLOWS.c.uuid)
        .where(FLOWS.c.uuid == bindparam("w_flow"), FLOWS.c.fence == bindparam("w_fence"))
        .with_for_update(read=True)
        .cte("fence")
    )
    return None, sa.exists(sa.select(sa.literal_column("1")).select_from(lock))


def _update(index: int, kind: Kind, checked: bool, release: bool | None, gate: Any) -> sa.CTE:
    table = TABLES[kind]
    p = f"p{index}_"
    statement = table.update().where(table.c.uuid == bindparam(f"{p}w_uuid"))
    if checked:
        statement = statement.where(table.c.revision == bindparam(f"{p}w_revision"))
    if kind == "flow":
        statement = statement.where(table.c.fence == bindparam("w_fence"))
    else:
        statement = statement.where(gate)
    values: dict[str, Any] = {name: bindparam(f"{p}{name}") for name in SETTABLE[kind]}
    if release is not None:
        values.update(release_values(release))
    statement = statement.values(**values, revision=table.c.revision + sa.literal_column("1"))
    return statement.returning(table.c.revision).cte(f"w{index}")


def _insert(index: int, gate: Any) -> sa.CTE:
    names = [name for name in COLUMNS["task"] if name != "id"]
    typed = [sa.cast(bindparam(f"p{index}_{name}"), TASKS.c[name].type) for name in names]
    statement = TASKS.insert().from_select(names, sa.select(*typed).where(gate))
    return statement.returning(TASKS.c.revision).cte(f"w{index}")


@functools.cache
def build(writes: tuple[Write, ...]) -> sa.Select[Any]:
    """The one statement for ``writes``: it returns each write's new revision."""
    flow, gate = _gate(writes)
    ctes: list[sa.CTE] = []
    for index, (op, kind, checked, _) in enumerate(writes):
        if op == "update" and kind == "flow":
            assert flow is not None  # _gate made it
            ctes.append(flow)
        elif op == "update":
            ctes.append(_update(index, kind, checked, None, gate))
        else:
            ctes.append(_insert(index, gate))
    revisions = [sa.select(cte.c.revision).scalar_subquery() for cte in ctes]
    # 1 / rows written, for every write: division_by_zero unless each wrote its row.
    written = [
        sa.literal_column("1") / sa.select(sa.func.count()).select_from(cte).scalar_subquery()
        for cte in ctes
    ]
    return sa.select(*revisions, *written)


def params(
    writes: Sequence[Write], rows: Sequence[dict[str, Any]], fence: tuple[str, int]
) -> dict[str, Any]:
    """The bound values of ``build(writes)`` for ``rows`` (one per write) under ``fence``."""
    values: dict[str, Any] = {"w_flow": fence[0], "w_fence": fence[1]}
    for index, ((op, kind, checked, _), row) in enumerate(zip(writes, rows, strict=True)):
        p = f"p{index}_"
        if op == "insert":
            values.update({f"{p}{name}": value for name, value in row.items() if name != "id"})
            continue
        values.update({f"{p}{name}": row[name] for name in SETTABLE[kind]})
        values[f"{p}w_uuid"] = row["uuid"]
        if checked:
            values[f"{p}w_revision"] = row["revision"]
    return values


class OneStatementCommits(SQLTransactions):
    """``SQLConnection``'s fenced commits, in one statement on PostgreSQL (module docstring)."""

    def update_details(self, *details: FlowDetail | TaskDetail, fence: Fence | None = None) -> None:
        """Write several stored flow/task records in one transaction (all or nothing)."""
        if fence is None or not self._one_statement_fits():
            return super().update_details(*details, fence=fence)
        rows = self._detail_rows(details)
        writes: list[Write] = [("update", kind, bool(row["revision"]), None) for kind, row in rows]
        revisions = self._in_one_statement(writes, [row for _, row in rows], fence)
        if revisions is None:  # a write found nothing to change: the usual way tells why
            return super().update_details(*details, fence=fence)
        for detail, revision in zip(details, revisions, strict=True):
            detail.revision = revision
        return None

    def commit_details(
        self,
        *details: FlowDetail | TaskDetail,
        fence: Fence,
        new: Sequence[TaskDetail] = (),
        release: OwnChange | None = None,
    ) -> None:
        """``update_details`` under ``fence``, ``new`` inserted, ``release`` applied, atomically."""
        flow = _check_commit(details, fence, new, release)
        if not self._one_statement_fits() or (release is not None and flow is None):
            return super().commit_details(*details, fence=fence, new=new, release=release)
        rows = self._detail_rows(details)
        writes: list[Write] = [
            (
                "update",
                kind,
                bool(row["revision"]),
                release.clear_cancel if release is not None and detail is flow else None,
            )
            for detail, (kind, row) in zip(details, rows, strict=True)
        ]
        writes += [("insert", "task", False, None)] * len(new)
        inserts = [{**records.task_to_row(td, fence[0]), "revision": 1} for td in new]
        revisions = self._in_one_statement(writes, [row for _, row in rows] + inserts, fence)
        if revisions is None:  # a write found nothing to change: the usual way tells why
            return super().commit_details(*details, fence=fence, new=new, release=release)
        for detail, revision in zip([*details, *new], revisions, strict=True):
            detail.revision = revision
        return None

    def _one_statement_fits(self) -> bool:
        """psycopg 3, schema seen, no transaction of ours open: one statement can do it."""
        return (
            self._address.psycopg
            and self._backend.schema_seen
            and self._current is None
            and self._open_snapshot is None
            and self._backend.corrupt is None
        )

    def _in_one_statement(
        self, writes: list[Write], rows: list[Row], fence: Fence
    ) -> list[int] | None:
        """Run ``writes`` as one autocommitted statement: their revisions, None if one missed."""
        statement = build(tuple(writes))
        values = params(writes, rows, fence)
        with self._autocommitted() as conn:
            try:
                found = conn.execute(statement, values).one()
            except sa.exc.DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) != NOTHING_WRITTEN:
                    raise
                return None
        return [int(revision) for revision in found[: len(writes)]]
