"""The one exception tree of ledgerflow.

::

    LedgerflowError
    ├── MissingInputsError        (also ValueError) tasks whose inputs nobody provides
    ├── NotFound                  (also LookupError) an unknown uuid
    ├── BackendNotFound           (also LookupError) an unknown backend scheme
    ├── InvalidUUIDError          (also ValueError) a uuid that is not a usable string
    ├── StateTransitionError      an illegal flow or task state change
    ├── SerializationError        (also ValueError) a value JSON cannot encode
    ├── VersionMismatchError      stored task major version differs from the code's
    ├── FactoryImportError        (also ImportError) a stored flow factory cannot be imported
    ├── ProcessDied               (recorded, not raised) a try's process died inside it
    ├── ConflictError             a write based on a stale copy of a record
    │   └── FencedOut             this engine's ownership of the flow was taken over
    ├── FlowBusy                  another live engine owns the flow
    ├── Interrupted               raised by a task to stop early on request (not a failure)
    ├── StorageError              the store failed; the driver's exception is __cause__
    │   ├── MissingDriverError    a driver's extra is not installed
    │   ├── SchemaVersionError    the store was written by a newer schema / needs upgrade
    │   ├── CorruptRecordError    a stored record cannot be decoded
    │   └── CorruptStoreError     the store's file is malformed: nothing more is written
    ├── TaskTimeout               a try ran past its task's timeout
    └── FlowFailed                a flow failed and was reverted
        └── FlowCancelled         a flow was cancelled on request and reverted
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from ledgerflow.models import Failure

__all__ = [
    "BackendNotFound",
    "ConflictError",
    "CorruptRecordError",
    "CorruptStoreError",
    "FactoryImportError",
    "FencedOut",
    "FlowBusy",
    "FlowCancelled",
    "FlowFailed",
    "Interrupted",
    "InvalidUUIDError",
    "LedgerflowError",
    "MissingDriverError",
    "MissingInputsError",
    "NotFound",
    "ProcessDied",
    "SchemaVersionError",
    "SerializationError",
    "StateTransitionError",
    "StorageError",
    "TaskTimeout",
    "VersionMismatchError",
]


class LedgerflowError(Exception):
    """Root of every error ledgerflow raises on purpose."""


class MissingInputsError(LedgerflowError, ValueError):
    """Some task requires a symbol that neither the store nor an upstream task provides."""

    def __init__(self, missing: Mapping[str, list[str] | tuple[str, ...] | set[str]]) -> None:
        self.missing = {name: sorted(symbols) for name, symbols in missing.items()}
        parts = [
            f"{task!r} needs {', '.join(map(repr, syms))}" for task, syms in self.missing.items()
        ]
        super().__init__("missing inputs: " + "; ".join(parts))


class NotFound(LedgerflowError, LookupError):
    """No record with the given uuid exists."""


class BackendNotFound(LedgerflowError, LookupError):
    """No backend is installed for the requested scheme."""


class InvalidUUIDError(LedgerflowError, ValueError):
    """A uuid that is not a non-empty string of at most 255 characters."""


class StateTransitionError(LedgerflowError):
    """A flow or task was asked to move to a state it cannot reach from its current one."""


class SerializationError(LedgerflowError, ValueError):
    """A value (result, meta, checkpoint, store) cannot be encoded as JSON."""


class VersionMismatchError(LedgerflowError):
    """A stored task was written by code of another major version."""


class FactoryImportError(LedgerflowError, ImportError):
    """A flow factory path cannot be imported; the message names it and where it looked."""


class ProcessDied(LedgerflowError):
    """The failure of a try found RUNNING on resume: its process died before it ended."""


class ConflictError(LedgerflowError):
    """A write was based on a stale copy of a record: someone else wrote it since."""


class FencedOut(ConflictError):
    """This engine's flow was taken over by another: the write was refused, nothing written."""


class FlowBusy(LedgerflowError):
    """Another live engine owns the flow (``owner``) until ``lease_expires_at`` at least."""

    def __init__(self, message: str, owner: str | None, lease_expires_at: datetime | None) -> None:
        super().__init__(message)
        self.owner = owner
        self.lease_expires_at = lease_expires_at


class Interrupted(LedgerflowError):
    """Raised by a task to stop its try early on request; not a failure."""


class TaskTimeout(LedgerflowError):
    """A try of a task ran past its ``timeout``."""


class StorageError(LedgerflowError):
    """The store failed; the driver's exception is the ``__cause__``."""


class MissingDriverError(StorageError, ImportError):
    """The database driver a URI needs is not installed (the message names the extra)."""


class SchemaVersionError(StorageError):
    """The store's schema is not the one this version of ledgerflow uses."""


class CorruptRecordError(StorageError):
    """A stored record cannot be decoded; the message names the record."""


class CorruptStoreError(StorageError):
    """The store itself is damaged (SQLite: malformed file); the backend stops writing to it."""


class FlowFailed(LedgerflowError):
    """A flow failed and was reverted; ``failures`` maps task name to its Failure."""

    def __init__(self, flow_name: str, failures: Mapping[str, Failure]) -> None:
        self.flow_name = flow_name
        self.failures = dict(failures)
        detail = "; ".join(f"{name}: {failure}" for name, failure in self.failures.items())
        super().__init__(f"flow {flow_name!r} failed: {detail}")


class FlowCancelled(FlowFailed):
    """The flow was cancelled on request: what ran was reverted and it ended CANCELLED."""

    def __init__(self, flow_name: str, failures: Mapping[str, Failure] | None = None) -> None:
        super().__init__(flow_name, failures or {})
        self.args = (f"flow {flow_name!r} was cancelled",)
