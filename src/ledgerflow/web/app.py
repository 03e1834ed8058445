"""The Starlette app: pages, their JSON twins under ``/api/``, and error pages.

Every handler reads through ``ledgerflow.history`` (one snapshot per page) on a
connection of its own, in Starlette's thread pool.  Errors never show a traceback:
an unknown or malformed uuid is a 404, bad paging parameters a 400 naming the
parameter, a store that cannot be read a 503 page (the server goes on serving).
A corrupt record is listed as such among the others (books page, a book's flows, a
flow's tasks, and their JSON twins); a book whose flows or tasks do not read says so
in place of its counts; a flow or task page whose book or flow record is corrupt
shows the record with a note naming that one; a page of the corrupt record itself
is a 500 page naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from ledgerflow import states
from ledgerflow.errors import (
    CorruptRecordError,
    InvalidUUIDError,
    NotFound,
    SchemaVersionError,
    StorageError,
)
from ledgerflow.history import PAGE_SIZE, History, check_uuid, task_tries
from ledgerflow.persistence import Backend, Connection, open_backend
from ledgerflow.web import views

__all__ = ["create_app"]

TEMPLATES = Path(__file__).with_name("templates")
#: Fields of a task whose whole text ``/tasks/{uuid}/text/{field}`` serves.
TEXT_FIELDS = ("failure", "revert_failure", "result", "checkpoint", "meta")
_HEADERS = {
    # Nothing but our own inline script and style; no framing by other sites.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class BadRequest(ValueError):
    """A query parameter that cannot be used (400, naming it)."""


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        clip=views.clip,
        preview=views.preview,
        when=views.when,
        duration=views.duration,
        printable=views.printable,
    )
    env.globals.update(
        states=states,
        TEXT_FIELDS=TEXT_FIELDS,
        running=views.RUNNING_STATES,
        task_rows=views.task_rows,
    )
    return env


class _Site:
    """The handlers, bound to one backend (and optionally a job board)."""

    def __init__(self, backend: Backend, board: Any) -> None:
        self.backend = backend
        self.board = board
        self.env = _environment()

    @contextlib.contextmanager
    def history(self) -> Iterator[History]:
        with self.backend.connect() as conn:
            yield History(conn)

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(
            request=request, has_board=self.board is not None, **context
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    # ---- books ----------------------------------------------------------------------
    def books_page(self, request: Request) -> Response:
        query = request.query_params
        search = query.get("q", "").strip()
        if search:
            target = self._find(search)
            if target is not None:
                return RedirectResponse(target, status_code=303)
        args = _list_args(request)
        with self.history() as history:
            page = history.books_around_corruption(prefix=search or None, **args)
            problem = None if page.total else _schema_problem(history.conn)
        return self.page(
            request,
            "books.html",
            page=page,
            search=search,
            state=args["state"] or "",
            name=args["name"] or "",
            limit=args["limit"],
            offset=args["offset"],
            problem=problem,
            flow_states=sorted(states.FLOW_STATES),
        )

    def books_api(self, request: Request) -> Response:
        args = _list_args(request)
        prefix = request.query_params.get("q") or None
        with self.history() as history:
            page = history.books_around_corruption(prefix=prefix, **args)
        items = [item.to_dict() for item in page.items]
        return _json({"items": items, "total": page.total, "next": page.next})

    def _find(self, search: str) -> str | None:
        """The page of the record ``search`` names exactly, if there is one."""
        try:
            check_uuid(search)
            with self.history() as history:
                kind = history.kind(search)
        except (NotFound, InvalidUUIDError):
            return None
        return f"/{kind}s/{_quote(search)}"

    # ---- records --------------------------------------------------------------------
    def book_page(self, request: Request) -> Response:
        with self.history() as history:
            found = history.book(request.path_params["uuid"], tolerant=True)
        return self.page(request, "book.html", view=found)

    def flow_page(self, request: Request) -> Response:
        with self.history() as history:
            found = history.flow(request.path_params["uuid"], tolerant=True)
        bars = views.svg_bars(found.timeline(views.TIMELINE_ROWS))
        drawn = found.timeline(views.TIMELINE_ROWS)
        live = found.flow.state in views.RUNNING_STATES and found.flow.state != states.PENDING
        return self.page(
            request, "flow.html", view=found, bars=bars, drawn=drawn, live=live, tries=task_tries
        )

    def task_page(self, request: Request) -> Response:
        with self.history() as history:
            found = history.task(request.path_params["uuid"], tolerant=True)
        return self.page(request, "task.html", view=found)

    def task_text(self, request: Request) -> Response:
        """The whole of one stored field of a task, as plain text."""
        field = request.path_params["field"]
        if field not in TEXT_FIELDS:
            raise HTTPException(404, f"a task has no text field {field[:40]!r}")
        with self.history() as history:
            task = history.task(request.path_params["uuid"], tolerant=True).task
        value = getattr(task, field)
        if field in ("failure", "revert_failure"):
            text = "" if value is None else _failure_text(value)
        else:
            text = views.preview(value, limit=2**62).text
        return PlainTextResponse(text, headers=_HEADERS)

    def record_api(self, kind: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            with self.history() as history:
                read = getattr(history, kind)
                found = read(request.path_params["uuid"], tolerant=True)
            return _json(found.to_dict())

        return handler

    # ---- jobs -----------------------------------------------------------------------
    def jobs_page(self, request: Request) -> Response:
        jobs = self._jobs(request)
        return self.page(request, "jobs.html", jobs=jobs, state=request.query_params.get("state"))

    def jobs_api(self, request: Request) -> Response:
        jobs = self._jobs(request)
        return _json({"items": jobs, "total": len(jobs), "next": None})

    def _jobs(self, request: Request) -> list[dict[str, Any]]:
        """The board's jobs (``board.jobs(state=)`` as API.md's job boards define it)."""
        if self.board is None:
            raise HTTPException(404, "no job board: start the view with --board URI")
        state = request.query_params.get("state") or None
        return [job.to_dict() for job in self.board.jobs(state=state.upper() if state else None)]


def _failure_text(failure: Any) -> str:
    parts = []
    current = failure
    while current is not None:
        parts.append(f"{' < '.join(current.exc_type_names)}: {current.message}\n")
        parts.append(current.traceback_str)
        current = current.cause
        if current is not None:
            parts.append("\ncaused by:\n")
    return "".join(parts)


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=_HEADERS)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, not {value}")
    return value


def _list_args(request: Request) -> dict[str, Any]:
    query = request.query_params
    state = (query.get("state") or "").upper() or None
    if state is not None and state not in states.FLOW_STATES:
        raise BadRequest(
            f"state must be one of {', '.join(sorted(states.FLOW_STATES))}, not {state[:40]!r}"
        )
    return {
        "limit": _int_param(request, "limit", PAGE_SIZE, 1, 1000),
        "offset": _int_param(request, "offset", 0, 0, 10**12),
        "after": query.get("after") or None,
        "state": state,
        "name": query.get("name") or None,
    }


def _schema_problem(conn: Connection) -> str | None:
    try:
        conn.validate()
    except StorageError as exc:
        return str(exc)
    return None


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_handlers(site: _Site) -> dict[Any, Callable[..., Any]]:
    def respond(request: Request, status: int, title: str, message: str) -> Response:
        if _wants_json(request):
            return _json({"error": message, "status": status}, status)
        return site.page(request, "error.html", status, title=title, message=message)

    def not_found(request: Request, exc: Exception) -> Response:
        return respond(request, 404, "Not found", str(exc))

    def bad_request(request: Request, exc: Exception) -> Response:
        return respond(request, 400, "Bad request", str(exc))

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return respond(request, exc.status_code, "Error", str(exc.detail))

    def corrupt_record(request: Request, exc: Exception) -> Response:
        return respond(
            request,
            500,
            "Corrupt record",
            f"{exc}; the rest of the store reads on: run `ledgerflow check` for every damage",
        )

    def store_error(request: Request, exc: Exception) -> Response:
        why = "has no ledgerflow schema" if isinstance(exc, SchemaVersionError) else "failed"
        return respond(request, 503, "The store cannot be read", f"{why}: {exc}")

    return {
        NotFound: not_found,
        InvalidUUIDError: not_found,  # a malformed uuid names no record: 404, as API.md says
        ValueError: bad_request,
        HTTPException: http_error,
        CorruptRecordError: corrupt_record,
        StorageError: store_error,
    }


def create_app(
    backend: Backend | str, *, board: Any = None, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """An ASGI app showing ``backend``'s books, flows and tasks (and ``board``'s jobs).

    ``backend`` is a Backend or a URI (opened here, closed at shutdown). ``board`` is a
    job board (``lf.open_board``): with one, ``/jobs`` lists its jobs; without, it is 404.
    ``allowed_hosts``: the Host headers served (others get 400), e.g. the loopback names,
    so a web page elsewhere cannot read the view through DNS rebinding; None: any.
    """
    owned = isinstance(backend, str)
    the_backend = open_backend(backend) if isinstance(backend, str) else backend
    site = _Site(the_backend, board)
    routes = [
        Route("/", site.books_page, methods=["GET"]),
        Route("/books/{uuid:path}", site.book_page, methods=["GET"]),
        Route("/flows/{uuid:path}", site.flow_page, methods=["GET"]),
        Route("/tasks/{uuid}/text/{field}", site.task_text, methods=["GET"]),
        Route("/tasks/{uuid:path}", site.task_page, methods=["GET"]),
        Route("/jobs", site.jobs_page, methods=["GET"]),
        Route("/api/books", site.books_api, methods=["GET"]),
        Route("/api/books/{uuid:path}", site.record_api("book"), methods=["GET"]),
        Route("/api/flows/{uuid:path}", site.record_api("flow"), methods=["GET"]),
        Route("/api/tasks/{uuid:path}", site.record_api("task"), methods=["GET"]),
        Route("/api/jobs", site.jobs_api, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        try:
            yield
        finally:
            if owned:
                the_backend.close()

    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(
        routes=routes,
        exception_handlers=_error_handlers(site),
        lifespan=lifespan,
        middleware=middleware,
    )
    app.state.backend = the_backend
    return app
