"""What makes a flow resumable from the store alone, and the checks a resume makes first.

``lf.load`` records a flow's factory as an import path.  When there is none (a flow
object, a lambda, a function in ``__main__`` or one its module does not give back), the
reason is recorded instead, ``lf.load`` warns once (``NotResumableWarning``) and
``lf.resume`` without ``flow=`` says exactly that reason.

"Once" is once per process for each flow name and reason, from whichever line loads
it: a service that loads the same flow object per request is told once, not per
request.  Python's own once-per-line registry cannot give that (opening a SQL backend
resets it, and it counts lines, not flows).  Warning filters still decide: under
"always" or "error" (``pytest.warns``, ``-W error``) every load warns, and a warning
an "ignore" filter swallowed was never shown, so it is not spent.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ledgerflow import states
from ledgerflow.engine.compile import Compiled
from ledgerflow.errors import NotResumableError, NotResumableWarning
from ledgerflow.imports import import_path
from ledgerflow.models import FlowDetail, TaskDetail

__all__ = ["REASON_KEY", "factory_path", "refusal", "vanished_tasks", "warn"]

#: Flow meta key: why the flow detail has no factory path.
REASON_KEY = "not_resumable"


def factory_path(factory: Callable[..., Any]) -> tuple[str | None, str | None]:
    """(the import path of ``factory`` if importing it gives it back, else why not)."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    name = getattr(factory, "__name__", None) or repr(factory)
    if not module or not qualname:
        return None, f"the factory {factory!r} has no module and qualified name to import it by"
    if name == "<lambda>" or qualname.endswith("<lambda>"):
        return None, "the factory is a lambda, which cannot be imported by name"
    if "<locals>" in qualname:
        return None, (
            f"the factory {qualname} is defined inside a function, so it cannot be imported by name"
        )
    if module == "__main__":
        return None, (
            f"the factory {qualname} is defined in __main__ (the script that was run), which "
            "another process cannot import; move it into a module"
        )
    path = f"{module}:{qualname}"
    try:
        found = import_path(path)
    except (ImportError, ValueError) as exc:
        return None, f"importing its path {path!r} fails ({exc})"
    if found is not factory:
        return None, f"importing its path {path!r} gives another object than the factory"
    return path, None


FLOW_OBJECT = (
    "it was given to lf.load as a flow object, not as a factory (a zero-argument function or "
    "a 'package.module:function' string)"
)


_PACKAGE = str(Path(__file__).resolve().parents[1])
#: (flow name, reason) pairs already shown in this process.
_shown: set[tuple[str, str]] = set()
_shown_lock = threading.Lock()


def _caller() -> tuple[int, FrameType]:
    """The stack level (for warnings.warn) and frame of the first caller outside ledgerflow."""
    frame, level = sys._getframe(1), 1  # warn() itself is level 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level, frame


def _action(message: str, frame: FrameType) -> str:
    """The action the warning filters give this warning raised at ``frame``."""
    module = frame.f_globals.get("__name__", "<string>")
    for action, text, category, module_pattern, lineno in warnings.filters:
        if (
            (text is None or text.match(message))
            and issubclass(NotResumableWarning, category)
            and (module_pattern is None or module_pattern.match(module))
            and lineno in (0, frame.f_lineno)
        ):
            return str(action)
    return str(getattr(warnings, "defaultaction", "default"))  # not in typeshed


def warn(flow_name: str, reason: str) -> None:
    """Warn, once per process for this flow and reason, that the store cannot rebuild it."""
    message = (
        f"flow {flow_name!r} cannot be resumed from the store alone: {reason}; "
        "lf.resume will need flow="
    )
    level, frame = _caller()
    if _action(message, frame) in ("default", "module", "once"):
        with _shown_lock:
            if (flow_name, reason) in _shown:
                return
            _shown.add((flow_name, reason))
    warnings.warn(NotResumableWarning(message), stacklevel=level)


def refusal(flow_uuid: str, meta: dict[str, Any]) -> NotResumableError:
    """The error for resuming, without ``flow=``, a flow detail stored without a factory."""
    reason = meta.get(REASON_KEY) or (
        "it was run without a factory path (from a flow object, a lambda or a function in __main__)"
    )
    return NotResumableError(
        f"flow detail {flow_uuid} cannot be rebuilt from the store: {reason}; pass flow= "
        "to resume it"
    )


def vanished_tasks(compiled: Compiled, flow_detail: FlowDetail) -> list[TaskDetail]:
    """Stored tasks the code no longer has: NotResumableError if one ever ran, else them.

    A task that ran and is gone from the code would stay behind, unreverted and never
    finished; one that never ran can simply be dropped.
    """
    names = set(compiled.by_name)
    gone = [td for td in flow_detail if td.name not in names]
    ran = [td for td in gone if td.attempts or td.state != states.PENDING]
    if ran:
        described = ", ".join(
            f"{td.name!r} ({td.state}, {td.attempts} attempt{'s' if td.attempts != 1 else ''})"
            for td in ran
        )
        raise NotResumableError(
            f"flow detail {flow_detail.uuid} has stored task{'s' if len(ran) > 1 else ''} "
            f"{described} that the flow's code no longer has: resuming would leave what "
            "it did behind; put the task back (under its stored name) to resume"
        )
    return gone
