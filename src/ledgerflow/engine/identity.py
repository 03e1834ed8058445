"""Who this engine is, as a flow's ``owner`` text, and whether a stored owner is gone.

Owner text is ``host:pid:start``: ``host`` is the hostname plus the kernel's boot id
and this process's pid namespace (``name/boot-id/pidns``), so containers that share a
hostname, or one host after a reboot, are told apart; ``pid`` is decimal; ``start``
is the process's start time in clock ticks since boot (``/proc/PID/stat``), so a pid
that the kernel reused for another process is never mistaken for the owner.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Final

__all__ = ["forget", "hold", "is_gone", "is_local", "owner_of", "this_process"]

_PROC: Final = Path("/proc")
_held_lock = threading.Lock()
#: Flow uuids that an engine of this process holds right now.
_held: set[str] = set()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _host() -> str:
    boot = _read(_PROC / "sys/kernel/random/boot_id") or "noboot"
    try:
        namespace = str(os.stat(_PROC / "self/ns/pid").st_ino)
    except OSError:
        namespace = "nons"
    name = socket.gethostname().replace(":", "_").replace("/", "_") or "localhost"
    return f"{name}/{boot}/{namespace}"


def _start_time(pid: int) -> str | None:
    stat = _read(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):  # a zombie has exited already
        return None
    return fields[19]


def this_process() -> str:
    """This process's owner text (computed per pid: a forked child is someone else)."""
    return owner_of(os.getpid()) or f"{_host()}:{os.getpid()}:0"


def owner_of(pid: int) -> str | None:
    """The owner text a process of this host with ``pid`` has, or None if there is none."""
    start = _start_time(pid)
    if start is None and pid != os.getpid():
        return None
    return f"{_host()}:{pid}:{start or '0'}"


def hold(flow_uuid: str) -> None:
    """Note that an engine of this process now holds ``flow_uuid``."""
    with _held_lock:
        _held.add(flow_uuid)


def forget(flow_uuid: str) -> None:
    """Note that no engine of this process holds ``flow_uuid`` any more."""
    with _held_lock:
        _held.discard(flow_uuid)


def is_local(owner: str) -> bool:
    """Whether ``owner`` names a process of this host (and pid namespace)."""
    return owner.rsplit(":", 2)[0] == _host()


def is_gone(owner: str, flow_uuid: str) -> bool:
    """Whether ``owner`` provably no longer runs ``flow_uuid`` (it lived on this host).

    Gone: its process has exited, its pid now belongs to a process started at another
    time, or it is this very process and no engine here holds the flow (an engine that
    could not let go, e.g. while the store was down).  An owner on another host (or in
    another container) is never known gone: its lease decides.
    """
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid_text, start = parts
    if host != _host():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        with _held_lock:
            return flow_uuid not in _held
    return _start_time(pid) != start
