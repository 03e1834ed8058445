"""The engine: compile a flow, run it serially or in parallel, revert, resume.

Its public names load on first use (PEP 562), so importing a small part of the
package (``ledgerflow.engine.identity`` for a listing's owner column) does not
import the engine, asyncio and the runners.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledgerflow.engine.api import aresume, arun, load, resume, run
    from ledgerflow.engine.context import TaskContext, current_task
    from ledgerflow.engine.control import cancel, suspend
    from ledgerflow.engine.engine import Engine

__all__ = [
    "Engine",
    "TaskContext",
    "aresume",
    "arun",
    "cancel",
    "current_task",
    "load",
    "resume",
    "run",
    "suspend",
]

#: Public name -> the submodule defining it.
_LAZY: dict[str, str] = {
    "Engine": "ledgerflow.engine.engine",
    "TaskContext": "ledgerflow.engine.context",
    "aresume": "ledgerflow.engine.api",
    "arun": "ledgerflow.engine.api",
    "cancel": "ledgerflow.engine.control",
    "current_task": "ledgerflow.engine.context",
    "load": "ledgerflow.engine.api",
    "resume": "ledgerflow.engine.api",
    "run": "ledgerflow.engine.api",
    "suspend": "ledgerflow.engine.control",
}


# Hidden from type checkers, which would otherwise accept any attribute of the module.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a public name from its submodule on first use."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'ledgerflow.engine' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """Every public name, loaded or not."""
    return sorted(set(globals()) | set(__all__))
