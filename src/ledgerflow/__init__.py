"""ledgerflow: durable, resumable workflows whose state lives in a logbook."""

from ledgerflow import states
from ledgerflow.engine import (
    Engine,
    TaskContext,
    cancel,
    current_task,
    load,
    resume,
    run,
    suspend,
)
from ledgerflow.errors import (
    BackendNotFound,
    ConflictError,
    CorruptRecordError,
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
    SchemaVersionError,
    SerializationError,
    StateTransitionError,
    StorageError,
    TaskTimeout,
    VersionMismatchError,
)
from ledgerflow.flow import Flow, GraphFlow, LinearFlow, UnorderedFlow
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence import Backend, Connection, available_schemes, open_backend
from ledgerflow.storage import StateChange, Storage
from ledgerflow.task import Retry, Task, task

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendNotFound",
    "ConflictError",
    "Connection",
    "CorruptRecordError",
    "Engine",
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
    "LedgerflowError",
    "LinearFlow",
    "LogBook",
    "MissingDriverError",
    "MissingInputsError",
    "NotFound",
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
    "VersionMismatchError",
    "available_schemes",
    "cancel",
    "current_task",
    "load",
    "open_backend",
    "resume",
    "run",
    "states",
    "suspend",
    "task",
]
