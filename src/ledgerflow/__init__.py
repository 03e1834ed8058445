"""ledgerflow: durable, resumable workflows whose state lives in a logbook.

The public names are loaded on first use (PEP 562): ``import ledgerflow`` alone
stays light, so a reading command (``ledgerflow books``) does not pay for the
engine, asyncio and the job boards it never touches.  Errors and ``states`` are
loaded at once (they are small, and ``except lf.NotFound`` needs no import).
"""

import importlib as _importlib
import typing as _typing

from ledgerflow import states
from ledgerflow.errors import (
    BackendNotFound,
    ConflictError,
    CorruptRecordError,
    CorruptStoreError,
    FactoryImportError,
    FencedOut,
    FlowBusy,
    FlowCancelled,
    FlowFailed,
    Interrupted,
    InvalidUUIDError,
    LedgerflowError,
    MissingDriverError,
    MissingInputsError,
    NotFound,
    NotResumableError,
    NotResumableWarning,
    ProcessDied,
    SchemaVersionError,
    SerializationError,
    StateTransitionError,
    StorageError,
    TaskTimeout,
    VersionMismatchError,
)

# Eager: the submodule ``ledgerflow.task`` would otherwise shadow the decorator ``task``.
from ledgerflow.task import Retry, Task, task

if _typing.TYPE_CHECKING:
    from ledgerflow.engine import (
        Engine,
        TaskContext,
        aresume,
        arun,
        cancel,
        current_task,
        load,
        resume,
        run,
        suspend,
    )
    from ledgerflow.flow import Flow, GraphFlow, LinearFlow, UnorderedFlow
    from ledgerflow.jobs import Job, JobBoard, open_board
    from ledgerflow.jobs.conductor import Conductor
    from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
    from ledgerflow.persistence import Backend, Connection, available_schemes, open_backend
    from ledgerflow.persistence.care import Damage, purge
    from ledgerflow.storage import StateChange, Storage
    from ledgerflow.values import UnresolvedValue, register_type

__version__ = "0.1.0"

#: Public name -> the module it lives in, imported when the name is first used.
_LAZY: dict[str, str] = {
    "Backend": "ledgerflow.persistence",
    "Conductor": "ledgerflow.jobs.conductor",
    "Connection": "ledgerflow.persistence",
    "Damage": "ledgerflow.persistence.care",
    "Engine": "ledgerflow.engine",
    "Failure": "ledgerflow.models",
    "Flow": "ledgerflow.flow",
    "FlowDetail": "ledgerflow.models",
    "GraphFlow": "ledgerflow.flow",
    "Job": "ledgerflow.jobs",
    "JobBoard": "ledgerflow.jobs",
    "LinearFlow": "ledgerflow.flow",
    "LogBook": "ledgerflow.models",
    "StateChange": "ledgerflow.storage",
    "Storage": "ledgerflow.storage",
    "TaskContext": "ledgerflow.engine",
    "TaskDetail": "ledgerflow.models",
    "UnorderedFlow": "ledgerflow.flow",
    "UnresolvedValue": "ledgerflow.values",
    "aresume": "ledgerflow.engine",
    "arun": "ledgerflow.engine",
    "available_schemes": "ledgerflow.persistence",
    "cancel": "ledgerflow.engine",
    "current_task": "ledgerflow.engine",
    "load": "ledgerflow.engine",
    "open_backend": "ledgerflow.persistence",
    "open_board": "ledgerflow.jobs",
    "purge": "ledgerflow.persistence.care",
    "register_type": "ledgerflow.values",
    "resume": "ledgerflow.engine",
    "run": "ledgerflow.engine",
    "suspend": "ledgerflow.engine",
}


__all__ = [
    "Backend",
    "BackendNotFound",
    "Conductor",
    "ConflictError",
    "Connection",
    "CorruptRecordError",
    "CorruptStoreError",
    "Damage",
    "Engine",
    "FactoryImportError",
    "Failure",
    "FencedOut",
    "Flow",
    "FlowBusy",
    "FlowCancelled",
    "FlowDetail",
    "FlowFailed",
    "GraphFlow",
    "Interrupted",
    "InvalidUUIDError",
    "Job",
    "JobBoard",
    "LedgerflowError",
    "LinearFlow",
    "LogBook",
    "MissingDriverError",
    "MissingInputsError",
    "NotFound",
    "NotResumableError",
    "NotResumableWarning",
    "ProcessDied",
    "Retry",
    "SchemaVersionError",
    "SerializationError",
    "StateChange",
    "StateTransitionError",
    "Storage",
    "StorageError",
    "Task",
    "TaskContext",
    "TaskDetail",
    "TaskTimeout",
    "UnorderedFlow",
    "UnresolvedValue",
    "VersionMismatchError",
    "aresume",
    "arun",
    "available_schemes",
    "cancel",
    "current_task",
    "load",
    "open_backend",
    "open_board",
    "purge",
    "register_type",
    "resume",
    "run",
    "states",
    "suspend",
    "task",
]


# Hidden from type checkers, which would otherwise accept any attribute of the module.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> _typing.Any:
        """Load a public name from its module on first use (then it is a plain attribute)."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'ledgerflow' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """Every public name, loaded or not."""
    return sorted(set(globals()) | set(__all__))
