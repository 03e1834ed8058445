"""The engine: compile a flow, run it serially or in parallel, revert, resume."""

from ledgerflow.engine.api import aresume, arun, load, resume, run
from ledgerflow.engine.context import TaskContext, current_task
from ledgerflow.engine.engine import Engine

__all__ = ["Engine", "TaskContext", "aresume", "arun", "current_task", "load", "resume", "run"]
