"""Lifecycle logs and OpenTelemetry spans of a run: the engine's one observation hook.

An observer listens to the run's state changes (the events ``engine.on_change``
callbacks get) and turns them into INFO records on the ``ledgerflow`` logger and,
when a tracer provider is set, into spans: one per flow run, one per task try as
its child.  When the logger is not enabled for INFO and no provider is set, no
observer exists and a run pays nothing.  OpenTelemetry is never imported here: a
program that set a provider has imported ``opentelemetry.trace`` already.

The task's span is made current in the thread that runs ``execute()``, so spans a
task opens nest under it.  The first run's trace context is kept in the flow's
meta (``trace``); a resumed run's span links to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ledgerflow import states

if TYPE_CHECKING:
    from ledgerflow.models import Failure
    from ledgerflow.storage import StateChange, Storage

__all__ = ["LOG", "TRACE_META_KEY", "Observer", "enter", "leave", "span_context", "watching"]

LOG = logging.getLogger("ledgerflow")
#: Flow meta key: {"trace_id": 32 hex digits, "span_id": 16} of the first run's span.
TRACE_META_KEY = "trace"
#: "CANCELLED" by name: the state arrives with cancel support (API.md), spans end on it.
FLOW_ENDS = frozenset(
    {states.SUCCESS, states.REVERTED, states.FAILURE, states.SUSPENDED, "CANCELLED"}
)
FLOW_ERRORS = frozenset({states.REVERTED, states.FAILURE, "CANCELLED"})
TRY_ENDS = frozenset({states.SUCCESS, states.RETRYING, states.FAILURE})
#: Task state -> (log message, the failure field its last argument shows, if any).
_TASK_LOGS: dict[str, tuple[str, str | None]] = {
    states.RUNNING: ("task %s started (attempt %d)", None),
    states.SUCCESS: ("task %s succeeded (attempt %d)", None),
    states.RETRYING: ("task %s failed, will retry (attempt %d): %s", "failure"),
    states.FAILURE: ("task %s failed (attempt %d): %s", "failure"),
    states.REVERTED: ("task %s reverted (attempt %d)", None),
    states.REVERT_FAILURE: ("task %s revert failed (attempt %d): %s", "revert_failure"),
}
_ACTIVE: dict[int, Observer] = {}
_ACTIVE_LOCK = threading.Lock()


def _info(
    message: str, args: tuple[Any, ...], flow_uuid: str, task: str | None, attempt: int | None
) -> None:
    """``LOG.info(message, *args)`` with the record attributes, without the caller lookup.

    The records come from the engine, not from the line that emitted them, and
    ``findCaller``'s walk up the stack was a third of a record's cost; the attributes
    are set on the record directly (no ``extra`` dict to build and check per record).
    """
    if LOG.isEnabledFor(logging.INFO):
        record = _record(message, args)
        record.flow_uuid, record.task, record.attempt = flow_uuid, task, attempt
        LOG.handle(record)


#: pid -> the fields every record of ours has in that process (see ``_record``).
_TEMPLATES: dict[int, dict[str, Any]] = {}


def _record(message: str, args: tuple[Any, ...]) -> logging.LogRecord:
    """An INFO record of this module, as ``LOG.makeRecord`` makes it, in half the time.

    ``LogRecord.__init__`` works out again, for every record, what is the same for all
    of ours (file, module, process); they are copied from a template made once per
    process.  Only with logging's defaults: a custom record factory, or thread and
    process fields turned off, get ``makeRecord`` itself.
    """
    if not (
        logging.getLogRecordFactory() is logging.LogRecord
        and logging.logThreads
        and logging.logProcesses
        and logging.logMultiprocessing
    ):
        return LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, message, args, None)
    pid = os.getpid()
    template = _TEMPLATES.get(pid)
    if template is None:
        made = LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, "", (), None)
        template = _TEMPLATES[pid] = dict(made.__dict__)
    record = logging.LogRecord.__new__(logging.LogRecord)
    fields = record.__dict__
    fields.update(template)
    now = time.time()
    fields["msg"], fields["args"], fields["created"] = message, args, now
    fields["msecs"] = int((now - int(now)) * 1000) + 0.0
    fields["relativeCreated"] = (now - logging._startTime) * 1000  # type: ignore[attr-defined]
    fields["thread"] = threading.get_ident()
    fields["threadName"] = threading.current_thread().name
    if "taskName" in fields:  # Python 3.12+: the asyncio task, as LogRecord finds it
        fields["taskName"] = _asyncio_task_name()
    return record


def _asyncio_task_name() -> str | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not getattr(logging, "logAsyncioTasks", True):
        return None
    try:
        return str(asyncio.current_task().get_name())
    except Exception:  # no running loop, or no task: what LogRecord leaves
        return None


def _trace_api() -> ModuleType | None:
    """``opentelemetry.trace`` if the program imported it and set a provider, else None."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # nothing set: spans would go nowhere
    return trace


class Observer:
    """Logs and spans for one run of one flow detail."""

    def __init__(self, storage: Storage, logs: bool, trace: ModuleType | None) -> None:
        self.storage = storage
        self.logs = logs
        self.trace = trace
        self.tracer = trace.get_tracer("ledgerflow") if trace is not None else None
        self.flow_span: Any = None
        self.flow_context: Any = None  # the flow span's context, parent of every try's span
        self.task_spans: dict[str, Any] = {}

    # ---- events -------------------------------------------------------------------
    def on_change(self, event: StateChange) -> None:
        """Turn one state change into a log record and span work."""
        if event.kind == "flow":
            self._flow(event)
        else:
            self._task(event)

    def _flow(self, event: StateChange) -> None:
        if self.logs:
            if event.state == states.RUNNING:
                _info("flow %s started", (event.name,), event.flow_uuid, None, None)
            elif event.state in FLOW_ENDS or event.state == states.REVERTING:
                _info("flow %s %s", (event.name, event.state), event.flow_uuid, None, None)
        if self.tracer is None:
            return
        if event.state == states.RUNNING and self.flow_span is None:
            self._start_flow_span(event)
        elif event.state in FLOW_ENDS and self.flow_span is not None:
            span, self.flow_span = self.flow_span, None
            span.set_attribute("ledgerflow.state", event.state)
            if event.state in FLOW_ERRORS:
                failure = next(iter(self.storage.failures().values()), None)
                self._error(span, f"flow ended {event.state}", failure)
            span.end()

    def _start_flow_span(self, event: StateChange) -> None:
        assert self.trace is not None and self.tracer is not None
        flow = self.storage.flow_detail
        links = []
        first = flow.meta.get(TRACE_META_KEY)
        if isinstance(first, dict):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                context = self.trace.SpanContext(
                    trace_id=int(first["trace_id"], 16),
                    span_id=int(first["span_id"], 16),
                    is_remote=True,
                    trace_flags=self.trace.TraceFlags(self.trace.TraceFlags.SAMPLED),
                )
                links.append(self.trace.Link(context, {"ledgerflow.link": "first run"}))
        span = self.tracer.start_span(
            f"flow {event.name}",
            attributes={"ledgerflow.flow_uuid": event.flow_uuid, "ledgerflow.flow": event.name},
            links=links,
        )
        self.flow_span = span
        self.flow_context = self.trace.set_span_in_context(span)
        if not isinstance(first, dict):
            own = span.get_span_context()
            if own.is_valid:
                self.storage.set_flow_meta(
                    TRACE_META_KEY,
                    {"trace_id": f"{own.trace_id:032x}", "span_id": f"{own.span_id:016x}"},
                )

    def _task(self, event: StateChange) -> None:
        name, state = event.name, event.state
        if self.logs:
            entry = _TASK_LOGS.get(state)
            if entry is not None:
                message, failure_field = entry
                detail = self.storage.task_detail(name)
                attempt = detail.attempts
                args: tuple[Any, ...] = (name, attempt)
                if failure_field is not None:
                    args += (str(getattr(detail, failure_field) or ""),)
                _info(message, args, event.flow_uuid, name, attempt)
        tracer = self.tracer
        if tracer is None:
            return
        if state == states.RUNNING:
            attributes = {
                "ledgerflow.flow_uuid": event.flow_uuid,
                "ledgerflow.task_uuid": event.task_uuid or "",
                "ledgerflow.task": name,
                "ledgerflow.attempt": self.storage.task_detail(name).attempts,
            }
            span = tracer.start_span(f"task {name}", self.flow_context, attributes=attributes)
            # Dict operations are atomic under the GIL: the worker thread reads this
            # dict (span_context) while the engine's thread writes it.
            self.task_spans[name] = span
        elif state in TRY_ENDS:
            span = self.task_spans.pop(name, None)
            if span is None:
                return
            if state != states.SUCCESS:
                span.set_attribute("ledgerflow.state", state)
                self._error(span, "task failed", self.storage.task_detail(name).failure)
            span.end()

    def _error(self, span: Any, message: str, failure: Failure | None = None) -> None:
        """Error status, and the failure as OpenTelemetry's "exception" event."""
        assert self.trace is not None
        status = self.trace.Status(self.trace.StatusCode.ERROR, str(failure or message))
        span.set_status(status)
        if failure is not None:
            span.add_event(
                "exception",
                {
                    "exception.type": failure.exc_type_names[0] if failure.exc_type_names else "",
                    "exception.message": failure.message,
                    "exception.stacktrace": failure.traceback_str,
                },
            )

    def span_context(self, name: str) -> Any:
        """The OpenTelemetry context with task ``name``'s span current (None: no span)."""
        span = self.task_spans.get(name)
        if span is None or self.trace is None:
            return None
        return self.trace.set_span_in_context(span)

    def close(self, exc: BaseException | None) -> None:
        """End what is still open (the run stopped on an error before its end state)."""
        spans, self.task_spans = list(self.task_spans.values()), {}
        if self.flow_span is not None:
            spans.append(self.flow_span)
            self.flow_span = None
        for span in spans:
            if exc is not None and self.trace is not None:
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, str(exc)))
                span.record_exception(exc)
            span.end()


@contextlib.contextmanager
def watching(storage: Storage) -> Iterator[Observer | None]:
    """Observe the run of ``storage``'s flow for the duration of the block (if anyone listens)."""
    logs = LOG.isEnabledFor(logging.INFO)
    trace = _trace_api()
    if not logs and trace is None:
        yield None
        return
    observer = Observer(storage, logs, trace)
    storage.add_listener(observer.on_change, immediate=True)
    with _ACTIVE_LOCK:
        _ACTIVE[id(storage)] = observer
    error: BaseException | None = None
    try:
        yield observer
    except BaseException as exc:
        error = exc
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(id(storage), None)
        storage.remove_listener(observer.on_change)
        observer.close(error)


def span_context(storage: Storage, name: str) -> Any:
    """The context to make current while task ``name`` runs (None when nothing observes)."""
    if not _ACTIVE:
        return None
    observer = _ACTIVE.get(id(storage))
    return None if observer is None else observer.span_context(name)


def enter(context: Any) -> Any:
    """Make an OpenTelemetry context current in this thread; a token for ``leave``."""
    if context is None:
        return None
    return sys.modules["opentelemetry.context"].attach(context)


def leave(token: Any) -> None:
    """Undo ``enter``."""
    if token is not None:
        sys.modules["opentelemetry.context"].detach(token)
