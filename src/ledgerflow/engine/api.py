"""``lf.load``, ``lf.run`` and ``lf.resume``: from a flow (or its factory) to an engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

from ledgerflow import serialization
from ledgerflow.engine.compile import Compiled, compile_flow
from ledgerflow.engine.engine import ENGINES, Engine
from ledgerflow.engine.lease import DEFAULT_LEASE, check_lease, check_wait
from ledgerflow.errors import VersionMismatchError
from ledgerflow.flow import Flow
from ledgerflow.imports import import_path
from ledgerflow.models import FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.persistence.registry import open_backend
from ledgerflow.storage import SAVE_POLICIES, StateChange, Storage

__all__ = ["load", "resume", "run"]

FlowSource = Flow | Callable[[], Flow] | str


def _import_factory(path: str) -> Callable[[], Flow]:
    obj: Any = import_path(path)
    if not callable(obj):
        raise ValueError(f"flow factory {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _factory_path(factory: Callable[..., Any]) -> str | None:
    """The import path of ``factory`` if importing it gives it back, else None."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    try:
        return path if _import_factory(path) is factory else None
    except (ImportError, AttributeError, ValueError):
        return None


def _materialize(source: FlowSource) -> tuple[Flow, str | None]:
    if isinstance(source, Flow):
        return source, None
    if isinstance(source, str):
        factory = _import_factory(source)
        path: str | None = source
    elif callable(source):
        factory, path = source, _factory_path(source)
    else:
        raise TypeError(f"expected a flow, a factory or 'module:function', not {source!r}")
    flow = factory()
    if not isinstance(flow, Flow):
        raise TypeError(f"flow factory {source!r} returned {type(flow).__name__}, not a flow")
    return flow, path


def _open(backend: Backend | str | None) -> tuple[Backend, bool]:
    """Return (backend, whether we opened it and so must close it)."""
    if backend is None:
        return MemoryBackend(), True
    if isinstance(backend, str):
        return open_backend(backend), True
    if isinstance(backend, Backend):
        return backend, False
    raise TypeError(f"backend must be a Backend, a URI or None, not {type(backend).__name__}")


def _connect(backend: Backend) -> Connection:
    conn = backend.connect()
    try:
        conn.upgrade()
    except BaseException:
        conn.close()
        raise
    return conn


def load(
    flow_or_factory: FlowSource,
    *,
    store: Mapping[str, Any] | None = None,
    backend: Backend | str | None = None,
    book: LogBook | str | None = None,
    engine: str = "serial",
    executor: futures.Executor | None = None,
    max_workers: int | None = None,
    save: str = "always",
    lease: float = DEFAULT_LEASE,
) -> Engine:
    """Check the flow, record it in a logbook and return an engine ready to ``run()``."""
    check_lease(lease)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if save not in SAVE_POLICIES:
        raise ValueError(f"save must be one of {', '.join(SAVE_POLICIES)}, not {save!r}")
    flow, factory = _materialize(flow_or_factory)
    store_values = dict(store or {})
    serialization.check(store_values, "store")
    compiled = compile_flow(flow, store_values)
    meta = {
        "factory": factory,
        "store": store_values,
        "engine": engine,
        "save": save,
        "max_workers": max_workers,
        "lease": lease,
    }
    if book is not None and not isinstance(book, LogBook | str):
        raise TypeError(f"book must be a LogBook, a name or None, not {type(book).__name__}")
    the_book = book if isinstance(book, LogBook) else LogBook(book or flow.name)
    flow_detail = FlowDetail(flow.name, type=type(flow).__name__, meta=meta)
    for node in compiled.nodes:
        flow_detail.add(TaskDetail(node.name, type=node.task.type_name, version=node.task.version))
    the_book.add(flow_detail)
    the_backend, owned = _open(backend)
    try:
        conn = _connect(the_backend)
        try:
            conn.save_logbook(the_book)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        if owned:
            the_backend.close()
        raise
    storage = Storage(the_backend, the_book, flow_detail, save=save, connection=conn)
    storage.bind(compiled)
    return Engine(
        compiled,
        storage,
        kind=engine,
        executor=executor,
        max_workers=max_workers,
        owned_backend=the_backend if owned else None,
        lease=lease,
    )


def run(
    flow_or_factory: FlowSource,
    *,
    store: Mapping[str, Any] | None = None,
    backend: Backend | str | None = None,
    book: LogBook | str | None = None,
    engine: str = "serial",
    executor: futures.Executor | None = None,
    max_workers: int | None = None,
    save: str = "always",
    lease: float = DEFAULT_LEASE,
) -> dict[str, Any]:
    """Load and run a flow; return every symbol a task provided."""
    return load(
        flow_or_factory,
        store=store,
        backend=backend,
        book=book,
        engine=engine,
        executor=executor,
        max_workers=max_workers,
        save=save,
        lease=lease,
    ).run()


def _major(version: str) -> str:
    return str(version).split(".", 1)[0].strip()


def _check_versions(compiled: Compiled, flow_detail: FlowDetail) -> None:
    stored = {td.name: td for td in flow_detail}
    for node in compiled.nodes:
        detail = stored.get(node.name)
        if detail is not None and _major(detail.version) != _major(node.task.version):
            raise VersionMismatchError(
                f"task {node.name!r} was stored by version {detail.version} but the code is "
                f"version {node.task.version}: major versions differ"
            )


def resume(
    backend: Backend | str,
    flow_uuid: str,
    *,
    flow: Flow | None = None,
    store: Mapping[str, Any] | None = None,
    wait: float = 0.0,
    lease: float | None = None,
    executor: futures.Executor | None = None,
    max_workers: int | None = None,
    on_change: Callable[[StateChange], Any] | None = None,
) -> dict[str, Any]:
    """Continue a stored flow detail where it stopped; return every provided symbol.

    FlowBusy if a live engine holds it (``wait`` seconds at most for it to let go);
    ``lease=None`` keeps the one ``load`` was given.  ``on_change`` (an extension of the
    contract) is registered as with ``engine.on_change`` before anything runs.
    """
    check_wait(wait)
    if lease is not None:
        check_lease(lease)
    the_backend, owned = _open(backend)
    conn: Connection | None = None
    try:
        conn = _connect(the_backend)
        engine = _resume_engine(the_backend, conn, flow_uuid, flow, store, owned)
        engine.wait = wait
        if lease is not None:
            engine.lease = lease
        if executor is not None:
            engine.use_executor(executor)
        if max_workers is not None:
            engine.use_max_workers(max_workers)
    except BaseException:
        if conn is not None:
            conn.close()
        if owned:
            the_backend.close()
        raise
    if on_change is not None:
        engine.on_change(on_change)
    return engine.run()


def _resume_engine(
    backend: Backend,
    conn: Connection,
    flow_uuid: str,
    flow: Flow | None,
    store: Mapping[str, Any] | None,
    owned: bool,
) -> Engine:
    seen = conn.get_ownership(flow_uuid)  # before the read: a take after it is noticed
    flow_detail = conn.get_flow_details(flow_uuid)
    ref = conn.locate(flow_uuid)
    book = (
        conn.get_logbook(ref.book_uuid, lazy=True) if ref.book_uuid else LogBook(flow_detail.name)
    )
    book.add(flow_detail)
    meta = flow_detail.meta
    if flow is None:
        factory = meta.get("factory")
        if not factory:
            raise ValueError(
                f"flow detail {flow_uuid} was run from a flow object, not a factory: "
                "pass flow= to resume it"
            )
        flow, _ = _materialize(factory)
    store_values = {**(meta.get("store") or {}), **(store or {})}
    serialization.check(store_values, "store")
    compiled = compile_flow(flow, store_values)
    _check_versions(compiled, flow_detail)
    if store:
        flow_detail.meta = {**meta, "store": store_values}
    storage = Storage(backend, book, flow_detail, save=meta.get("save", "always"), connection=conn)
    known = {td.name for td in flow_detail}
    new = [
        TaskDetail(node.name, type=node.task.type_name, version=node.task.version)
        for node in compiled.nodes
        if node.name not in known
    ]
    for node in compiled.nodes:
        if node.name in known:
            storage.task_detail(node.name).version = node.task.version
    engine = Engine(
        compiled,
        storage,
        kind=meta.get("engine", "serial"),
        max_workers=meta.get("max_workers"),
        owned_backend=backend if owned else None,
        lease=meta.get("lease") or DEFAULT_LEASE,
    )

    engine.seen_fence, engine.seen_owner = seen.fence, seen.owner

    def add_new_tasks() -> None:  # once the flow is taken: a refused resume writes nothing
        for node in compiled.nodes:
            if node.name in known:
                storage.task_detail(node.name).version = node.task.version
        if store:
            flow_detail.meta = {**flow_detail.meta, "store": store_values}
            storage.store = dict(store_values)
        if new or store:
            storage.add_task_details(new)
        storage.bind(compiled)

    engine.after_take.append(add_new_tasks)
    storage.bind(compiled)
    return engine
