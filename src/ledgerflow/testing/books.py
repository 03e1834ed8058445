"""Records the backend checks store: a book of flows of tasks with every field set."""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerflow import states
from ledgerflow.models import FlowDetail, LogBook, TaskDetail

__all__ = ["make_book"]


def make_book(
    name: str = "book", flows: int = 1, tasks: int = 3, *, created_at: datetime | None = None
) -> LogBook:
    """Build a book with ``flows`` flow details of ``tasks`` task details each."""
    book = LogBook(name, meta={"owner": "ops", "tags": ["a", "b"]})
    if created_at is not None:
        book.created_at = book.updated_at = created_at
    for f in range(flows):
        flow = FlowDetail(f"flow-{f}", type="linear", meta={"factory": "pkg.mod:build", "n": f})
        for t in range(tasks):
            flow.add(
                TaskDetail(
                    f"task-{f}-{t}",
                    type="pkg.mod.Task",
                    version="1.2",
                    state=states.SUCCESS,
                    result={"value": t, "items": [1, 2.5, "three", None, True]},
                    meta={"t": t},
                    attempts=1,
                    started_at=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                    finished_at=datetime(2026, 1, 2, 3, 4, 6, 654321, tzinfo=UTC),
                )
            )
        book.add(flow)
    return book
