"""Jobs, boards and conductors: many processes and hosts share the work."""

from ledgerflow.jobs.board import JobBoard
from ledgerflow.jobs.model import CANCELLED, CLAIMED, DONE, FAILED, JOB_STATES, READY, Job
from ledgerflow.jobs.open import open_board

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
