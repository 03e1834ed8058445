"""The engine: compile a flow, run it serially or in parallel, revert, resume."""

from ledgerflow.engine.api import load, resume, run
from ledgerflow.engine.context import TaskContext, current_task
from ledgerflow.engine.control import cancel, suspend
from ledgerflow.engine.engine import Engine

__all__ = ["Engine", "TaskContext", "cancel", "current_task", "load", "resume", "run", "suspend"]
