"""ledgerflow: durable, resumable workflows whose state lives in a logbook."""

from ledgerflow import states
from ledgerflow.errors import (
    BackendNotFound,
    ConflictError,
    CorruptRecordError,
    FlowFailed,
    InvalidUUIDError,
    LedgerflowError,
    MissingDriverError,
    MissingInputsError,
    NotFound,
    SchemaVersionError,
    SerializationError,
    StateTransitionError,
    StorageError,
    VersionMismatchError,
)
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence import Backend, Connection, available_schemes, open_backend

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendNotFound",
    "ConflictError",
    "Connection",
    "CorruptRecordError",
    "Failure",
    "FlowDetail",
    "FlowFailed",
    "InvalidUUIDError",
    "LedgerflowError",
    "LogBook",
    "MissingDriverError",
    "MissingInputsError",
    "NotFound",
    "SchemaVersionError",
    "SerializationError",
    "StateTransitionError",
    "StorageError",
    "TaskDetail",
    "VersionMismatchError",
    "available_schemes",
    "open_backend",
    "states",
]
