"""``memory://``: a board in this process's memory (tests, one-process programs)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from typing import Any

from ledgerflow.jobs.board import Idle, JobBoard, Later, key_held
from ledgerflow.jobs.model import CLAIMED, ENDED, READY, Job
from ledgerflow.models import LogBook, utcnow
from ledgerflow.persistence.base import Backend

__all__ = ["MemoryBoard"]


@dataclasses.dataclass
class _Entry:
    job: Job
    seq: int
    claim_expires_at: datetime | None = None


class MemoryBoard(JobBoard):
    """Jobs in a dict behind one lock; the logbooks go to the backend given."""

    schemes = ("memory",)

    def __init__(self, backend: Backend, *, owns_backend: bool) -> None:
        super().__init__(backend, owns_backend=owns_backend)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._entries: dict[str, _Entry] = {}
        self._seq = 0

    def _post(self, book: LogBook, job: Job) -> Job:
        with self.backend.connect() as conn:
            conn.save_logbook(book)
        with self._lock:
            if job.key is not None:
                held = self._holding(job.key)
                if held is not None:
                    return dataclasses.replace(held)
            self._seq += 1
            self._entries[job.uuid] = _Entry(dataclasses.replace(job), self._seq)
            self._work.notify_all()
        return job

    def _holding(self, key: str) -> Job | None:
        for entry in self._entries.values():
            if entry.job.key == key and entry.job.state not in ENDED:
                return entry.job
        return None

    def _find_key(self, key: str) -> Job | None:
        with self._lock:
            held = self._holding(key)
            return None if held is None else dataclasses.replace(held)

    def _get(self, job_uuid: str) -> Job | None:
        with self._lock:
            entry = self._entries.get(job_uuid)
            return None if entry is None else dataclasses.replace(entry.job)

    def _list(self, state: str | None, limit: int | None) -> list[Job]:
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: -e.seq)
            found = [dataclasses.replace(e.job) for e in entries if state in (None, e.job.state)]
        return found if limit is None else found[:limit]

    def _claimable(self, entry: _Entry, now: datetime) -> bool:
        job = entry.job
        if job.state == READY:
            return job.available_at <= now
        return (
            job.state == CLAIMED
            and entry.claim_expires_at is not None
            and entry.claim_expires_at <= now
            and job.attempts < job.max_attempts
        )

    def claim(self, owner: str, lease: float) -> Job | None:
        """Claim the best job available now (priority, then age): READY, or a lapsed claim."""
        from datetime import timedelta

        now = utcnow()
        with self._lock:
            ready = [e for e in self._entries.values() if self._claimable(e, now)]
            if not ready:
                return None
            entry = min(ready, key=lambda e: (-e.job.priority, e.seq))
            entry.job.state, entry.job.owner = CLAIMED, owner
            entry.job.attempts += 1
            entry.claim_expires_at = now + timedelta(seconds=lease)
            return dataclasses.replace(entry.job)

    def _change(
        self,
        job_uuid: str,
        from_states: tuple[str, ...],
        owner: str | None,
        changes: dict[str, Any],
    ) -> bool:
        with self._lock:
            entry = self._entries.get(job_uuid)
            if entry is None or entry.job.state not in from_states:
                return False
            if owner is not None and entry.job.owner != owner:
                return False
            unfinished = (READY, CLAIMED)
            if changes.get("state") in unfinished and entry.job.state not in unfinished:
                key = entry.job.key
                held = None if key is None else self._holding(key)
                if held is not None and held.uuid != job_uuid:
                    raise ValueError(key_held(job_uuid))
            now = utcnow()
            for name, value in changes.items():
                if isinstance(value, Later):
                    value = value.after(now)
                if name == "claim_expires_at":
                    entry.claim_expires_at = value
                elif name == "attempts" and value == -1:
                    entry.job.attempts = max(0, entry.job.attempts - 1)
                else:
                    setattr(entry.job, name, value)
            if entry.job.state == READY:
                self._work.notify_all()
            return True

    def _lapsed_at_max(self) -> list[tuple[str, str, int]]:
        now = utcnow()
        with self._lock:
            return [
                (e.job.uuid, e.job.owner or "", e.job.attempts)
                for e in self._entries.values()
                if e.job.state == CLAIMED
                and e.claim_expires_at is not None
                and e.claim_expires_at <= now
                and e.job.attempts >= e.job.max_attempts
            ]

    def idle(self) -> Idle:
        """What is left to claim, now or later."""
        now = utcnow()
        with self._lock:
            ready = [e.job for e in self._entries.values() if e.job.state == READY]
            claimed = [e for e in self._entries.values() if e.job.state == CLAIMED]
            lapsed = [
                e for e in claimed if e.claim_expires_at is not None and e.claim_expires_at <= now
            ]
            return Idle(
                ready=len(ready),
                lapsed=len(lapsed),
                next_at=min((j.available_at for j in ready), default=None),
                claimed=tuple((e.job.uuid, e.job.owner or "") for e in claimed),
                lapsed_at_max=sum(1 for e in lapsed if e.job.attempts >= e.job.max_attempts),
            )

    def clear_all(self) -> None:
        """Delete every job of this board (its logbooks stay)."""
        with self._lock:
            self._entries.clear()

    def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s; a post or hand-back wakes it early."""
        with self._work:
            self._work.wait(max(0.0, timeout))
