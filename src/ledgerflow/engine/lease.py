"""One engine's hold on its flow: take it, renew it on its own connection, let it go.

These writes sit outside the save policy (they are not the flow's progress) and never
change a record's revision.  The heartbeat renews every third of the lease on a
connection of its own, so a long commit or checkpoint on the engine's connection
never delays it, and brings back any suspend or cancel request stored for the flow.
Its thread starts only when the first renewal is due (``_Starter``, one per process):
a run shorter than that, a conductor's one-task job say, starts and joins no thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from ledgerflow.engine import identity
from ledgerflow.errors import FlowBusy, LedgerflowError
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.ownership import OwnChange, Ownership

__all__ = ["DEFAULT_LEASE", "Lease", "check_lease", "check_wait"]

LOG = logging.getLogger("ledgerflow.engine")
DEFAULT_LEASE: Final = 15.0
#: Longest pause between two looks at a busy flow while ``wait=`` runs.
_POLL: Final = 0.05
#: Pause between two looks in /proc at an owner of this host that may be dying.
_LOCAL_POLL: Final = 0.005


def _seconds(value: object, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or math.isinf(value):
        limit = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{what} must be {limit} finite seconds, not {value!r}")
    return float(value)


def check_lease(value: object) -> float:
    """``value`` as a lease in seconds; ValueError unless it is a positive finite number."""
    return _seconds(value, "lease", allow_zero=False)


def check_wait(value: object) -> float:
    """``value`` as a wait in seconds; ValueError unless it is a non-negative finite number."""
    return _seconds(value, "wait", allow_zero=True)


class _Starter:
    """One thread per process that starts each lease's heartbeat when its first beat is due."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._serving = False
        # A forked child has no such thread, and its parent's leases are not its own.
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._due, self._changed, self._serving = [], threading.Condition(), False

    def add(self, lease: Lease, due: float) -> None:
        """Start ``lease``'s heartbeat at ``due`` (monotonic), unless it stopped by then."""
        with self._changed:
            heapq.heappush(self._due, (due, next(self._order), lease))
            if not self._serving:
                self._serving = True
                threading.Thread(target=self._serve, name="ledgerflow-leases", daemon=True).start()
            elif self._due[0][2] is lease:  # due before any other: the wait is shorter now
                self._changed.notify()

    def _serve(self) -> None:
        while True:
            with self._changed:
                while self._due and self._due[0][2].stopped:
                    heapq.heappop(self._due)  # stopped before its first beat: nothing to do
                if not self._due:
                    self._changed.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                lease = heapq.heappop(self._due)[2]
            lease.start_beating()


_STARTER = _Starter()


class Lease:
    """Ownership of one flow detail for the length of one ``run()``."""

    def __init__(
        self,
        backend: Backend,
        conn: Connection,
        flow_uuid: str,
        seconds: float,
        on_request: Callable[[str], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.conn = conn
        self.flow_uuid = flow_uuid
        self.seconds = seconds
        self.owner = identity.this_process()
        self.fence = 0
        self.request: str | None = None
        self._on_request = on_request
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def take(self, wait: float, seen: Ownership | None = None) -> Ownership:
        """Take the flow (fence + 1); FlowBusy if a live owner keeps it past ``wait``.

        ``seen``, an earlier read of the ownership, serves the first compare-and-set
        only when it shows the flow free: if it is stale the UPDATE (fence, and the
        lease's end on the server's clock, in its WHERE) fails and the flow is read again.
        """
        deadline = time.monotonic() + wait
        while True:
            if seen is None or not seen.expired:
                seen = self.conn.get_ownership(self.flow_uuid)
            gone = seen.owner is not None and identity.is_gone(seen.owner, self.flow_uuid)
            change = OwnChange("take", seen.fence, self.owner, self.seconds, force=gone)
            if seen.expired or gone:
                # The ownership as the take left it (a request stored before it included).
                taken = self.conn.take_ownership(self.flow_uuid, change)
                if taken is not None:
                    break
                seen = None
                continue  # another taker won the race, or the owner renewed: look again
            left = deadline - time.monotonic()
            if left <= 0:
                raise FlowBusy(
                    f"flow detail {self.flow_uuid} is owned by {seen.owner} (lease until "
                    f"{_when(seen)}); pass wait= to wait for it",
                    seen.owner,
                    seen.lease_expires_at,
                )
            _pause(seen.owner, self.flow_uuid, min(_POLL, left))
        identity.hold(self.flow_uuid)
        self.fence = taken.fence
        self.request = taken.request
        return taken

    def start_heartbeat(self) -> None:
        """Renew the lease every third of it, on a connection of its own, until ``release``."""
        _STARTER.add(self, time.monotonic() + self.seconds / 3)

    @property
    def stopped(self) -> bool:
        """Whether the heartbeat was stopped (it never starts after that)."""
        return self._stop.is_set()

    def start_beating(self) -> None:
        """The first renewal is due: start the heartbeat's thread (not if it was stopped)."""
        with self._thread_lock:
            if self._stop.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._beat, name=f"ledgerflow-lease-{self.flow_uuid[:8]}", daemon=True
            )
            self._thread.start()

    def _beat(self) -> None:
        # Started when the first renewal was due: renew, then every third of the lease.
        with self.backend.connect() as conn:
            while not self._stop.is_set() and self._renew(conn):
                self._stop.wait(self.seconds / 3)

    def _renew(self, conn: Connection) -> bool:
        """One beat: renew, pass on a stored request; False once the flow was taken over."""
        try:
            change = OwnChange("renew", self.fence, self.owner, self.seconds)
            if not conn.change_ownership(self.flow_uuid, change):
                self._on_lost()
                return False
            request = conn.get_ownership(self.flow_uuid).request
        except LedgerflowError as exc:  # the store blinked: the next beat tries again
            LOG.warning("lease of flow %s not renewed: %s", self.flow_uuid, exc)
            return True
        if request is not None:
            self._on_request(request)
        return True

    def stop_heartbeat(self) -> None:
        """Stop renewing the lease (the heartbeat thread has ended on return); idempotent."""
        with self._thread_lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def release_change(self) -> OwnChange:
        """The release of an ended flow under this lease's fence (a cancel request goes too)."""
        return OwnChange("release", self.fence, clear_cancel=True)

    def released(self) -> None:
        """The flow was let go of with its last write (``release_change``): forget it here."""
        self.stop_heartbeat()
        identity.forget(self.flow_uuid)

    def release(self, *, clear_cancel: bool) -> None:
        """Stop the heartbeat and let go of the flow (nothing happens if it was taken over)."""
        self.stop_heartbeat()
        try:
            self.conn.change_ownership(
                self.flow_uuid, OwnChange("release", self.fence, clear_cancel=clear_cancel)
            )
        except LedgerflowError as exc:
            # The flow stays owned by this (soon dead) process: a resume on this host
            # takes it at once, elsewhere once the lease runs out.
            LOG.warning("could not let go of flow %s: %s", self.flow_uuid, exc)
        finally:
            identity.forget(self.flow_uuid)


def _pause(owner: str | None, flow_uuid: str, seconds: float) -> None:
    """Sleep ``seconds``, but wake as soon as an owner on this host is provably gone.

    Right after a SIGKILL the owner may still look alive for a moment (the signal lands
    asynchronously): its process is watched in /proc, which costs no store round trip.
    """
    if owner is None or not identity.is_local(owner):
        time.sleep(seconds)  # only its lease can free it
        return
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if owner is not None and identity.is_gone(owner, flow_uuid):
            return
        time.sleep(min(_LOCAL_POLL, left))


def _when(seen: Ownership) -> str:
    lease = seen.lease_expires_at
    return "unknown" if lease is None else lease.isoformat(timespec="milliseconds")
