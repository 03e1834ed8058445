"""Jobs, boards and conductors: many processes and hosts share the work."""

from ledgerflow.jobs.board import JobBoard
from ledgerflow.jobs.model import CANCELLED, CLAIMED, DONE, FAILED, JOB_STATES, READY, Job
from ledgerflow.jobs.open import open_board
from ledgerflow.persistence.care import BOOK_GUARDS


def _install_purge_guard() -> None:
    from ledgerflow.jobs.guard import held_books

    if held_books not in BOOK_GUARDS:
        BOOK_GUARDS.append(held_books)


_install_purge_guard()

__all__ = [
    "CANCELLED",
    "CLAIMED",
    "DONE",
    "FAILED",
    "JOB_STATES",
    "READY",
    "Job",
    "JobBoard",
    "open_board",
]
