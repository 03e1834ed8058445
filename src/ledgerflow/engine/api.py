"""``lf.load``, ``lf.run`` and ``lf.resume``: from a flow (or its factory) to an engine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from ledgerflow import serialization
from ledgerflow.engine import resumable
from ledgerflow.engine.compile import Compiled, compile_flow
from ledgerflow.engine.engine import ENGINES, Engine
from ledgerflow.engine.lease import DEFAULT_LEASE, check_lease, check_wait
from ledgerflow.errors import SerializationError, VersionMismatchError
from ledgerflow.flow import Flow
from ledgerflow.imports import import_path
from ledgerflow.models import FlowDetail, LogBook, TaskDetail, utcnow
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.persistence.memory import MemoryBackend
from ledgerflow.persistence.ownership import Ownership
from ledgerflow.persistence.registry import open_backend
from ledgerflow.storage import SAVE_POLICIES, StateChange, Storage

__all__ = ["aresume", "arun", "load", "resume", "run"]

FlowSource = Flow | Callable[[], Flow] | str


def _import_factory(path: str) -> Callable[[], Flow]:
    obj: Any = import_path(path)
    if not callable(obj):
        raise ValueError(f"flow factory {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _materialize(source: FlowSource) -> tuple[Flow, str | None, str | None]:
    """(the flow, its factory path or None, why there is no path or None)."""
    if isinstance(source, Flow):
        return source, None, resumable.FLOW_OBJECT
    if isinstance(source, str):
        factory = _import_factory(source)
        path: str | None = source
        reason: str | None = None
    elif callable(source):
        factory = source
        path, reason = resumable.factory_path(source)
    else:
        raise TypeError(f"expected a flow, a factory or 'module:function', not {source!r}")
    flow = factory()
    if not isinstance(flow, Flow):
        raise TypeError(f"flow factory {source!r} returned {type(flow).__name__}, not a flow")
    return flow, path, reason


def _store(store: Any) -> dict[str, Any]:
    """A copy of ``store=``; TypeError unless it is a mapping with string keys."""
    if store is None:
        return {}
    if not isinstance(store, Mapping):
        raise TypeError(
            f"store must be a mapping of symbol names to values, not {type(store).__name__}"
        )
    bad = [key for key in store if not isinstance(key, str)]
    if bad:
        raise TypeError(f"store keys are symbol names and must be strings, not {bad[0]!r}")
    return dict(store)


def _outlives_process(backend: Backend | str | None) -> bool:
    """Whether ``backend`` is a store another process could resume a flow from."""
    if isinstance(backend, str):
        return not backend.startswith("memory:")
    return backend is not None and not isinstance(backend, MemoryBackend)


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
    store_values = _store(store)
    flow, factory, reason = _materialize(flow_or_factory)
    meta: dict[str, Any] = {
        "factory": factory,
        "store": store_values,
        "engine": engine,
        "save": save,
        "max_workers": max_workers,
        "lease": lease,
    }
    if reason is not None:
        meta[resumable.REASON_KEY] = reason
    meta_text = _encoded_meta(meta, store_values)
    compiled = compile_flow(flow, store_values)
    if book is not None and not isinstance(book, LogBook | str):
        raise TypeError(f"book must be a LogBook, a name or None, not {type(book).__name__}")
    if reason is not None and _outlives_process(backend):
        resumable.warn(flow.name, reason)
    the_book = book if isinstance(book, LogBook) else LogBook(book or flow.name)
    flow_detail = FlowDetail(flow.name, type=type(flow).__name__, meta=meta)
    flow_detail.remember_encoding("meta", meta, meta_text)  # the first write encodes nothing
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


def _encoded_meta(meta: dict[str, Any], store_values: dict[str, Any]) -> str:
    """A new flow's meta as JSON text; a store that cannot be stored is named as such."""
    try:
        return serialization.dumps(meta, "meta of the new flow detail")
    except SerializationError:
        serialization.check(store_values, "store")  # the store is what failed: name it
        raise


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
    return _resumed(
        backend,
        flow_uuid,
        flow,
        store,
        on_change,
        wait=wait,
        lease=lease,
        executor=executor,
        max_workers=max_workers,
    ).run()


async def arun(flow_or_factory: FlowSource, **kwargs: Any) -> dict[str, Any]:
    """``lf.run`` from inside a running event loop, without blocking it (same arguments).

    Loading and the engine's writes happen in a thread; ``async def`` tasks run on this
    loop (``Engine.arun``).
    """
    engine = await asyncio.to_thread(load, flow_or_factory, **kwargs)
    return await engine.arun()


async def aresume(
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
    """``lf.resume`` from inside a running event loop, without blocking it."""
    engine = await asyncio.to_thread(
        functools.partial(
            _resumed,
            backend,
            flow_uuid,
            flow,
            store,
            on_change,
            wait=wait,
            lease=lease,
            executor=executor,
            max_workers=max_workers,
        )
    )
    return await engine.arun()


def _resumed(
    backend: Backend | str,
    flow_uuid: str,
    flow: Flow | None,
    store: Mapping[str, Any] | None,
    on_change: Callable[[StateChange], Any] | None,
    *,
    wait: float = 0.0,
    lease: float | None = None,
    executor: futures.Executor | None = None,
    max_workers: int | None = None,
) -> Engine:
    """The engine that continues stored flow detail ``flow_uuid`` (not run yet)."""
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
    return engine


@dataclass(frozen=True)
class StoredFlow:
    """What a resume starts from, read as of one moment: the flow, its book, its ownership."""

    flow_detail: FlowDetail
    book: LogBook
    seen: Ownership


def read_stored(conn: Connection, flow_uuid: str, book_uuid: str | None = None) -> StoredFlow:
    """The flow detail with its tasks, its book (lazy) and its ownership, in one snapshot.

    One read transaction, so a take after it is noticed (fence).  ``book_uuid``, when the
    caller knows it (a job does), saves looking the flow up.  Read after the factory's
    import: stored Enums and dataclasses of its modules decode to their classes
    (decoding itself never imports).
    """
    with conn.snapshot():
        flow_detail = conn.get_flow_details(flow_uuid)
        if flow_detail.owner is None:
            # Nobody holds it: free whatever the store's clock says, and the row read
            # tells the fence.  A pending request comes back with the take.
            seen = Ownership(
                flow_uuid, flow_detail.state, None, flow_detail.fence, None, None, utcnow()
            )
        else:
            seen = conn.get_ownership(flow_uuid)  # the lease is judged on the store's clock
        if book_uuid is None:
            book_uuid = conn.locate(flow_uuid).book_uuid
        book = conn.get_logbook(book_uuid, lazy=True) if book_uuid else LogBook(flow_detail.name)
    return StoredFlow(flow_detail, book, seen)


def _resume_engine(
    backend: Backend,
    conn: Connection,
    flow_uuid: str,
    flow: Flow | None,
    store: Mapping[str, Any] | None,
    owned: bool,
    stored: StoredFlow | None = None,
) -> Engine:
    """The engine resuming ``flow_uuid``; ``stored``: a ``read_stored`` made after the import."""
    if flow is None:
        stored_meta = conn.get_flow_details(flow_uuid, lazy=True).meta
        if not stored_meta.get("factory"):
            raise resumable.refusal(flow_uuid, stored_meta)
        flow, _, _ = _materialize(stored_meta["factory"])
    if stored is None:
        stored = read_stored(conn, flow_uuid)
    flow_detail, book, seen = stored.flow_detail, stored.book, stored.seen
    book.add(flow_detail)
    meta = flow_detail.meta
    store_values = {**(meta.get("store") or {}), **_store(store)}
    serialization.check(store_values, "store")
    compiled = compile_flow(flow, store_values)
    _check_versions(compiled, flow_detail)
    # Gone from the code before they ever started: dropped from the store once the flow
    # is taken (a refused resume writes nothing).
    never_ran = resumable.vanished_tasks(compiled, flow_detail)
    for td in never_ran:
        flow_detail.remove(td.uuid)
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
    engine.seen = seen

    def add_new_tasks() -> None:  # once the flow is taken: a refused resume writes nothing
        if never_ran:
            with contextlib.suppress(NotImplementedError):
                conn.destroy_task_details(flow_uuid, [td.uuid for td in never_ran])
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
