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
    ProcessDied,
    SchemaVersionError,
    SerializationError,
    StateTransitionError,
    StorageError,
    TaskTimeout,
    VersionMismatchError,
)
from ledgerflow.flow import Flow, GraphFlow, LinearFlow, UnorderedFlow
from ledgerflow.jobs import Job, JobBoard, open_board
from ledgerflow.jobs.conductor import Conductor
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence import Backend, Connection, available_schemes, open_backend
from ledgerflow.persistence.care import Damage, purge
from ledgerflow.storage import StateChange, Storage
from ledgerflow.task import Retry, Task, task

__version__ = "0.1.0"

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
    "VersionMismatchError",
    "available_schemes",
    "cancel",
    "current_task",
    "load",
    "open_backend",
    "open_board",
    "purge",
    "resume",
    "run",
    "states",
    "suspend",
    "task",
]
