"""Backends that store logbooks: the contract, the registry and the built-in stores."""

from ledgerflow.persistence.base import Backend, Connection, RecordRef
from ledgerflow.persistence.registry import available_schemes, open_backend

__all__ = ["Backend", "Connection", "RecordRef", "available_schemes", "open_backend"]
