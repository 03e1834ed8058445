"""Store care: finding corrupt records (``check``) and removing finished books (``purge``).

Both work on every backend.  ``Connection`` carries versions written on the public
API alone (so a third-party backend gets them for free); ``RecordConnection`` checks
row by row through its ``_scan`` primitive, and the SQL backend purges with one
DELETE per batch.  What makes a book purgeable is decided here once:

* it has at least one flow, and every flow ended (its state is in ``states``) before
  the cutoff (a flow ended at its ``updated_at``);
* no flow is owned by a live engine (``owner`` set, once flows carry one);
* no guard in ``BOOK_GUARDS`` protects it.  A guard is how other subsystems keep
  books: the job board registers one that names the books of unfinished jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ledgerflow.errors import LedgerflowError
from ledgerflow.models import FlowDetail, LogBook, TaskDetail, utcnow
from ledgerflow.persistence import records
from ledgerflow.persistence.records import Kind, Row

if TYPE_CHECKING:
    from ledgerflow.persistence.base import Backend, Connection
    from ledgerflow.persistence.primitives import RecordConnection

__all__ = [
    "BOOK_GUARDS",
    "DEFAULT_PURGE_STATES",
    "Damage",
    "PurgePolicy",
    "decode_problem",
    "purge",
]

#: End states a purge removes unless told otherwise (API.md, Store care).
DEFAULT_PURGE_STATES: Final = ("SUCCESS", "REVERTED", "CANCELLED")
#: Flow states that are finished for good: never running, never resumable into a run.
#: A purge refuses any other state, whatever it is asked.
FINISHED_STATES: Final = frozenset({"SUCCESS", "REVERTED", "CANCELLED", "FAILURE"})
#: Books per batch: each batch is one short write transaction.
PURGE_BATCH: Final = 1000

#: What a scan yields per stored row: (where it lives, the row or None, what is wrong or None).
ScanItem = tuple[str, Row | None, str | None]
KINDS: Final[tuple[Kind, ...]] = ("book", "flow", "task")

#: ``progress(done, total)``: books looked at so far, of how many.
Progress = Callable[[int, int], None]

#: Guards that keep books from a purge: ``guard(connection, book_uuids)`` returns the
#: uuids among ``book_uuids`` that must stay.  The job board appends one that names
#: the books of READY and CLAIMED jobs; nothing else registers one today.
BOOK_GUARDS: list[Callable[[Connection, Sequence[str]], Collection[str]]] = []


@dataclass(frozen=True)
class Damage:
    """One thing ``check`` found wrong: the record (if known), where it lives, and what."""

    kind: Kind | None
    uuid: str | None
    where: str
    problem: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (keys are the attribute names)."""
        return {"kind": self.kind, "uuid": self.uuid, "where": self.where, "problem": self.problem}

    def __str__(self) -> str:
        name = records.NAMES[self.kind] if self.kind else "store"
        subject = f"{name} {self.uuid}" if self.uuid else name
        return f"{subject} ({self.where}): {self.problem}"


def decode_problem(kind: Kind, row: Row) -> str | None:
    """What is wrong with a stored row (it does not decode, or holds what no write may), or None."""
    decode: dict[Kind, Callable[[Row], LogBook | FlowDetail | TaskDetail]] = {
        "book": records.row_to_book,
        "flow": records.row_to_flow,
        "task": records.row_to_task,
    }
    try:
        records.check_fields(kind, decode[kind](row))
    except (LedgerflowError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def record_problems(record: LogBook | FlowDetail | TaskDetail) -> list[str]:
    """What is wrong with a loaded record and its nested details (an unknown state, say)."""
    kinds: dict[type, Kind] = {LogBook: "book", FlowDetail: "flow", TaskDetail: "task"}
    problems: list[str] = []
    pending: list[Any] = [record]
    while pending:
        current = pending.pop(0)
        try:
            records.check_fields(kinds[type(current)], current)
        except ValueError as exc:
            problems.append(str(exc))
        if not isinstance(current, TaskDetail):
            pending.extend(current)
    return problems


@dataclass(frozen=True)
class PurgePolicy:
    """Which books a purge removes: see the module docstring."""

    cutoff: datetime
    states: frozenset[str]
    dry_run: bool = False
    batch: int = PURGE_BATCH

    @classmethod
    def make(
        cls, older_than: timedelta, end_states: Iterable[str], dry_run: bool, batch: int
    ) -> PurgePolicy:
        """Check ``lf.purge``'s arguments and build the policy; ValueError names a bad one."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValueError(f"older_than must be a non-negative timedelta, not {older_than!r}")
        if isinstance(end_states, str):
            end_states = (end_states,)
        wanted = frozenset(end_states)
        unfinished = sorted(wanted - FINISHED_STATES)
        if unfinished:
            raise ValueError(
                f"purge removes only finished flows; {', '.join(map(repr, unfinished))} "
                f"is not an end state (one of {', '.join(sorted(FINISHED_STATES))})"
            )
        if not wanted:
            raise ValueError("states must name at least one end state")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, not {batch!r}")
        return cls(utcnow() - older_than, wanted, bool(dry_run), batch)

    def flow_ended(self, state: str, updated_at: datetime, owner: object = None) -> bool:
        """Whether a flow ended in one of the states before the cutoff and nobody owns it."""
        if updated_at.tzinfo is None:  # stores keep UTC; a naive time is UTC
            updated_at = updated_at.replace(tzinfo=self.cutoff.tzinfo)
        return state in self.states and updated_at < self.cutoff and not owner

    def purgeable(self, flows: Sequence[Row]) -> bool:
        """Whether a book whose flow rows are ``flows`` may go."""
        return bool(flows) and all(
            self.flow_ended(row["state"], row["updated_at"], row.get("owner")) for row in flows
        )


def flow_fields(flow: FlowDetail) -> Row:
    """The fields of a flow detail a purge looks at, as a row."""
    owner = getattr(flow, "owner", None)
    return {"state": flow.state, "updated_at": flow.updated_at, "owner": owner}


def guarded(conn: Connection, book_uuids: Sequence[str]) -> set[str]:
    """The books among ``book_uuids`` that a guard keeps."""
    kept: set[str] = set()
    for guard in BOOK_GUARDS:
        kept.update(guard(conn, book_uuids))
    return kept


def purge(
    backend: Backend | str,
    *,
    older_than: timedelta,
    states: Iterable[str] = DEFAULT_PURGE_STATES,
    dry_run: bool = False,
    batch: int = PURGE_BATCH,
    progress: Progress | None = None,
) -> int:
    """Remove the books whose flows all ended in ``states`` before now - ``older_than``.

    Never a book without flows, with a flow owned or unfinished, or one a guard keeps
    (the books of unfinished jobs).  Returns how many books were removed (``dry_run``:
    would be).  Batched: no batch holds the write lock long, none loads every book.
    """
    from ledgerflow.persistence.registry import open_backend

    policy = PurgePolicy.make(older_than, states, dry_run, batch)
    store = open_backend(backend) if isinstance(backend, str) else backend
    try:
        with store.connect() as conn:
            return conn.purge_logbooks(policy, progress)
    finally:
        if store is not backend:
            store.close()


def check_by_books(conn: Connection) -> Iterator[Damage]:
    """``check`` on the public API: every book read whole; a book that does not load is named."""
    offset = 0
    while True:
        try:
            page = conn.list_logbooks(limit=PURGE_BATCH, offset=offset)
        except LedgerflowError as exc:
            yield Damage("book", None, f"books {offset + 1}-{offset + PURGE_BATCH}", str(exc))
            return
        for book in page:
            try:
                conn.get_logbook(book.uuid)
            except LedgerflowError as exc:
                yield Damage("book", book.uuid, f"logbook {book.uuid}", str(exc))
        if len(page) < PURGE_BATCH:
            return
        offset += len(page)


def purge_by_books(conn: Connection, policy: PurgePolicy, progress: Progress | None) -> int:
    """``purge_logbooks`` on the public API, oldest books first, a page at a time."""

    def batch(offset: int) -> tuple[int, int]:
        page = [book.uuid for book in conn.list_logbooks(limit=policy.batch, offset=offset)]
        flows = {uuid: [flow_fields(f) for f in conn.get_flows_for_book(uuid)] for uuid in page}
        doomed = [uuid for uuid in page if policy.purgeable(flows[uuid])]
        kept = guarded(conn, doomed) if doomed else set()
        doomed = [uuid for uuid in doomed if uuid not in kept]
        if not policy.dry_run:
            for uuid in doomed:
                conn.destroy_logbook(uuid)
        return len(page), len(doomed)

    return in_batches(conn.count_logbooks(), policy, progress, batch)


def in_batches(
    total: int,
    policy: PurgePolicy,
    progress: Progress | None,
    batch: Callable[[int], tuple[int, int]],
) -> int:
    """Run ``batch(offset) -> (books looked at, books removed)`` until a short page; the sum."""
    offset = done = purged = 0
    while True:
        looked, removed = batch(offset)
        purged += removed
        done += looked
        # Removed books no longer take a place in the order; kept ones (and a dry run's) do.
        offset += looked - (0 if policy.dry_run else removed)
        if progress is not None:
            progress(done, total)
        if looked < policy.batch:
            return purged


def check_rows(conn: RecordConnection) -> Iterator[Damage]:
    """``check`` over row primitives: the store's own check, then every row decoded."""
    yield from conn._check_store()
    for kind in KINDS:
        where = f"the {records.NAMES[kind]}s"
        try:
            for where, row, problem in conn._scan(kind):
                if row is not None and problem is None:
                    problem = decode_problem(kind, row)
                if problem is not None:
                    uuid = row.get("uuid") if row is not None else None
                    yield Damage(kind, uuid if isinstance(uuid, str) else None, where, problem)
        except LedgerflowError as exc:  # the rest of this kind cannot be read: say so, go on
            yield Damage(kind, None, f"after {where}", str(exc))


def scan_by_parents(conn: RecordConnection, kind: Kind) -> Iterator[ScanItem]:
    """Every row of ``kind``, reached from the books down; a read that fails is one item."""
    books = conn._list_books(limit=None, offset=0, name=None, state=None, newest_first=False)
    assert isinstance(books, list)
    parents: list[str] = [row["uuid"] for row in books]
    if kind == "book":
        yield from ((f"logbook {row['uuid']}", row, None) for row in books)
        return
    if kind == "task":
        parents = [row["uuid"] for row in _rows_under(conn, "flow", parents)]
    for parent in parents:
        try:
            rows = conn._fetch(kind, parents=[parent])
        except LedgerflowError as exc:
            yield f"the {records.NAMES[kind]}s under {parent}", None, str(exc)
            continue
        yield from ((f"{records.NAMES[kind]} {row['uuid']}", row, None) for row in rows)


def _rows_under(conn: RecordConnection, kind: Kind, parents: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    for parent in parents:
        try:
            rows.extend(conn._fetch(kind, parents=[parent]))
        except LedgerflowError:
            continue  # reported when that kind itself is scanned
    return rows


def purge_rows(conn: RecordConnection, policy: PurgePolicy, progress: Progress | None) -> int:
    """``purge_logbooks`` over row primitives: each batch decided and removed in one transaction."""

    def batch(offset: int) -> tuple[int, int]:
        with conn._snapshot() if policy.dry_run else conn._transaction():
            page = conn._list_books(
                limit=policy.batch, offset=offset, name=None, state=None, newest_first=False
            )
            assert isinstance(page, list)
            doomed = _doomed(conn, policy, [row["uuid"] for row in page])
            if not policy.dry_run:
                for uuid in doomed:
                    conn._delete_book(uuid)
        return len(page), len(doomed)

    return in_batches(conn.count_logbooks(), policy, progress, batch)


def _doomed(conn: RecordConnection, policy: PurgePolicy, uuids: Sequence[str]) -> list[str]:
    flows: dict[str, list[Row]] = {uuid: [] for uuid in uuids}
    for row in conn._fetch_many("flow", parents=list(uuids)):
        flows[row["book_uuid"]].append(row)
    doomed = [uuid for uuid in uuids if policy.purgeable(flows[uuid])]
    kept = guarded(conn, doomed) if doomed else set()
    return [uuid for uuid in doomed if uuid not in kept]
