"""The backend contract as a pytest suite (see ``ledgerflow.testing``).

Every test takes the ``backend`` fixture (an empty, upgraded store) and checks one
promise of API.md's Persistence section.  Records are compared through
``to_dict()`` so every field, nested details and their order are covered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from ledgerflow import states
from ledgerflow.errors import (
    ConflictError,
    InvalidUUIDError,
    LedgerflowError,
    NotFound,
    SerializationError,
    StorageError,
)
from ledgerflow.models import Failure, FlowDetail, LogBook, TaskDetail
from ledgerflow.persistence.base import Backend, Connection
from ledgerflow.testing.books import make_book
from ledgerflow.testing.commits import CommitChecks
from ledgerflow.testing.conflicts import ConflictChecks
from ledgerflow.testing.copies import CopyChecks, EncodingChecks
from ledgerflow.testing.fencing import FencingChecks
from ledgerflow.testing.fields import FieldChecks
from ledgerflow.testing.listing import ListingChecks

__all__ = ["BackendConformance", "make_book"]


class Unregistered:
    """A class no one registered with ``lf.register_type``: its instances cannot be stored.

    (Sets, bytes, int dict keys and NaN are storable typed values: only a type ledgerflow
    does not know stays unencodable, for every backend.)
    """


def _failure() -> Failure:
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError("outer ünïcode") from exc
    except RuntimeError as exc:
        return Failure.from_exception(exc)


def _strip_revisions(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_revisions(v) for k, v in data.items() if k != "revision"}
    if isinstance(data, list):
        return [_strip_revisions(v) for v in data]
    return data


class BackendConformance(
    ConflictChecks,
    CopyChecks,
    EncodingChecks,
    FieldChecks,
    ListingChecks,
    FencingChecks,
    CommitChecks,
):
    """The contract every ledgerflow backend passes; subclasses provide ``backend``."""

    @pytest.fixture
    def conn(self, backend: Backend) -> Iterator[Connection]:
        """A connection to the store under test."""
        with backend.connect() as connection:
            yield connection

    # ---- schema -----------------------------------------------------------------
    def test_upgrade_is_idempotent_and_validates(self, conn: Connection) -> None:
        conn.upgrade()
        conn.upgrade()
        conn.validate()

    def test_upgrade_keeps_data(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book())
        conn.upgrade()
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()

    # ---- round trips ------------------------------------------------------------
    def test_save_and_get_round_trip_every_field(self, conn: Connection) -> None:
        book = make_book(flows=2, tasks=3)
        task = book.flows[0].tasks[1]
        task.failure = _failure()
        task.revert_failure = Failure(("x.Custom", "builtins.Exception"), "revert broke")
        task.checkpoint = {"offset": 42}
        task.state = states.REVERT_FAILURE
        started = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
        task.tries = [
            {
                "attempt": 1,
                "started_at": started,
                "finished_at": started + timedelta(seconds=1),
                "state": states.FAILURE,
                "failure": _failure(),
            },
            {
                "attempt": 2,
                "started_at": started + timedelta(seconds=2),
                "finished_at": None,
                "state": states.RUNNING,
                "failure": None,
            },
        ]
        task.attempts = 2
        conn.save_logbook(book)
        loaded = conn.get_logbook(book.uuid)
        assert loaded.to_dict() == book.to_dict()
        assert loaded is not book
        loaded_task = loaded.find(book.flows[0].uuid).find(task.uuid)  # type: ignore[union-attr]
        assert loaded_task is not None
        assert loaded_task.failure == task.failure
        assert loaded_task.failure is not None and loaded_task.failure.cause is not None
        assert loaded_task.failure.cause.message == "'inner'"
        assert loaded_task.tries == task.tries
        assert loaded_task.tries[0]["failure"].cause.message == "'inner'"
        assert loaded.flows[0].tasks[0].tries == []

    def test_save_returns_the_object_with_revisions_bumped(self, conn: Connection) -> None:
        book = make_book(tasks=2)
        assert conn.save_logbook(book) is book
        assert [book.revision, book.flows[0].revision] == [1, 1]
        assert [td.revision for td in book.flows[0]] == [1, 1]
        conn.save_logbook(book)
        assert book.revision == 2 and book.flows[0].tasks[0].revision == 2
        assert conn.get_logbook(book.uuid).revision == 2

    def test_timestamps_round_trip_exactly(self, conn: Connection) -> None:
        moment = datetime(2031, 12, 31, 23, 59, 58, 999999, tzinfo=UTC)
        book = make_book(created_at=moment)
        book.flows[0].tasks[0].started_at = moment - timedelta(microseconds=1)
        book.flows[0].tasks[0].finished_at = None
        conn.save_logbook(book)
        loaded = conn.get_logbook(book.uuid)
        assert loaded.created_at == moment and loaded.created_at.tzinfo is not None
        assert loaded.flows[0].tasks[0].started_at == moment - timedelta(microseconds=1)
        assert loaded.flows[0].tasks[0].finished_at is None

    @pytest.mark.parametrize(
        "value",
        [
            None,
            0,
            -1.5,
            "",
            "ünïcødé ✓ 日本",
            [1, [2, [3]]],
            {"nested": {"x": [None, True]}},
            2**53,
        ],
    )
    def test_results_of_every_json_shape_round_trip(self, conn: Connection, value: Any) -> None:
        book = make_book(tasks=1)
        book.flows[0].tasks[0].result = value
        book.flows[0].tasks[0].checkpoint = value
        conn.save_logbook(book)
        task = conn.get_task_details(book.flows[0].tasks[0].uuid)
        assert task.result == value and task.checkpoint == value

    def test_typed_values_round_trip_with_their_types(self, conn: Connection) -> None:
        book = make_book(tasks=1)
        book.meta = {"day": date(2026, 1, 2), "ids": (1, 2)}
        flow = book.flows[0]
        when = datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
        flow.meta = {"store": {"when": when, "naive": when.replace(tzinfo=None)}}
        task = flow.tasks[0]
        task.result = {
            1: (b"\x00bytes", {3, 1, 2}),
            (2, "b"): Decimal("10.50"),
            "gap": timedelta(days=1, microseconds=5),
            "at": time(12, 30),
        }
        task.checkpoint = frozenset({"a", "b"})
        task.meta = {"id": UUID(int=7), "$lf": "a user key"}
        conn.save_logbook(book)
        loaded = conn.get_logbook(book.uuid)
        assert loaded.to_dict() == book.to_dict()
        loaded_task = loaded.flows[0].tasks[0]
        assert loaded_task.result == task.result
        assert [type(key) for key in loaded_task.result] == [int, tuple, str, str]
        assert loaded_task.result[1] == (b"\x00bytes", {1, 2, 3})
        assert loaded_task.checkpoint == frozenset({"a", "b"})
        assert loaded_task.meta == task.meta
        assert loaded.meta == {"day": date(2026, 1, 2), "ids": (1, 2)}
        assert loaded.flows[0].meta["store"]["naive"].tzinfo is None
        assert loaded.flows[0].meta["store"]["when"] == when

    def test_details_keep_the_order_they_were_added(self, conn: Connection) -> None:
        book = LogBook("ordered")
        names = [f"flow-{i}" for i in (5, 3, 9, 1, 7, 2)]
        for name in names:
            flow = FlowDetail(name)
            for t in (4, 0, 3, 1, 2):
                flow.add(TaskDetail(f"{name}-{t}"))
            book.add(flow)
        conn.save_logbook(book)
        late = FlowDetail("flow-0")
        late.add(TaskDetail("late"))
        book.add(late)
        conn.save_logbook(book)
        loaded = conn.get_logbook(book.uuid)
        assert [f.name for f in loaded] == [*names, "flow-0"]
        assert [t.name for t in loaded.flows[0]] == [f"{names[0]}-{t}" for t in (4, 0, 3, 1, 2)]
        assert [f.name for f in conn.get_flows_for_book(book.uuid)] == [*names, "flow-0"]
        flow_uuid = book.flows[1].uuid
        assert [t.name for t in conn.get_tasks_for_flow(flow_uuid)] == [
            f"{names[1]}-{t}" for t in (4, 0, 3, 1, 2)
        ]

    def test_lazy_leaves_out_nested_details(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(flows=2, tasks=2))
        assert len(conn.get_logbook(book.uuid, lazy=True)) == 0
        assert len(conn.get_logbooks(lazy=True)[0]) == 0
        assert len(conn.get_flow_details(book.flows[0].uuid, lazy=True)) == 0
        assert len(conn.get_flow_details(book.flows[0].uuid)) == 2

    def test_uuids_are_any_string_up_to_255_characters(self, conn: Connection) -> None:
        odd = ["../../etc/passwd", "a/b\\c", "ünï cødé", "x" * 255, "'; DROP TABLE x; --"]
        book = LogBook("odd", uuid=odd[0])
        flow = FlowDetail("f", uuid=odd[1])
        for uuid in odd[2:]:
            flow.add(TaskDetail(uuid[:10], uuid=uuid))
        book.add(flow)
        conn.save_logbook(book)
        assert conn.get_logbook(odd[0]).to_dict() == book.to_dict()
        for uuid in odd[2:]:
            assert conn.get_task_details(uuid).uuid == uuid

    @pytest.mark.parametrize("bad", ["", "x" * 256, 42, None, " padded "])
    def test_malformed_uuid_is_a_clear_error(self, conn: Connection, bad: Any) -> None:
        with pytest.raises(InvalidUUIDError):
            conn.get_logbook(bad)
        with pytest.raises(InvalidUUIDError):
            conn.get_task_details(bad)
        if isinstance(bad, str):
            with pytest.raises(InvalidUUIDError):
                conn.save_logbook(LogBook("bad", uuid=bad or "\x00"))
        assert conn.get_logbooks() == []

    # ---- merging ----------------------------------------------------------------
    def test_save_merges_and_keeps_absent_details(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(flows=1, tasks=2))
        other = LogBook(book.name, uuid=book.uuid, meta={"new": True})
        extra = FlowDetail("extra")
        extra.add(TaskDetail("extra-task"))
        other.add(extra)
        conn.save_logbook(other)
        loaded = conn.get_logbook(book.uuid)
        assert [f.name for f in loaded] == ["flow-0", "extra"]
        assert len(loaded.flows[0]) == 2
        assert loaded.meta == {"new": True}
        assert loaded.revision == 2

    def test_update_flow_details_writes_flow_and_inserts_new_tasks(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=1))
        flow = book.flows[0]
        flow.state = states.RUNNING
        flow.meta["engine"] = "serial"
        new_task = TaskDetail("added")
        flow.add(new_task)
        assert conn.update_flow_details(flow) is flow
        assert flow.revision == 2 and new_task.revision == 1
        loaded = conn.get_flow_details(flow.uuid)
        assert loaded.state == states.RUNNING and loaded.meta["engine"] == "serial"
        assert [t.name for t in loaded] == ["task-0-0", "added"]

    def test_update_task_details_persists_and_bumps(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=2))
        task = book.flows[0].tasks[0]
        task.state = states.FAILURE
        task.failure = _failure()
        task.attempts = 3
        assert conn.update_task_details(task) is task
        assert task.revision == 2
        assert conn.get_task_details(task.uuid).to_dict() == task.to_dict()
        untouched = conn.get_task_details(book.flows[0].tasks[1].uuid)
        assert untouched.revision == 1

    def test_update_details_writes_several_records_together(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book(tasks=2))
        flow, (first, second) = book.flows[0], book.flows[0].tasks
        first.state, second.state, flow.state = states.SUCCESS, states.RUNNING, states.RUNNING
        conn.update_details(first, second, flow)
        assert [first.revision, second.revision, flow.revision] == [2, 2, 2]
        assert conn.get_logbook(book.uuid).to_dict() == book.to_dict()

    # ---- isolation --------------------------------------------------------------
    def test_returned_and_passed_objects_are_independent(self, conn: Connection) -> None:
        book = make_book(tasks=1)
        conn.save_logbook(book)
        book.meta["after-save"] = True
        book.flows[0].tasks[0].result["value"] = "mutated"
        loaded = conn.get_logbook(book.uuid)
        assert "after-save" not in loaded.meta
        assert loaded.flows[0].tasks[0].result["value"] == 0
        loaded.flows[0].tasks[0].result["items"].append("x")
        loaded.meta["x"] = 1
        again = conn.get_logbook(book.uuid)
        assert again.flows[0].tasks[0].result["items"] == [1, 2.5, "three", None, True]
        assert "x" not in again.meta

    # ---- serialization ----------------------------------------------------------
    def test_unencodable_values_raise_and_write_nothing(self, conn: Connection) -> None:
        book = make_book(tasks=2)
        book.flows[0].tasks[1].result = {"handle": object()}
        with pytest.raises(SerializationError) as info:
            conn.save_logbook(book)
        assert "task-0-1" in str(info.value)
        assert isinstance(info.value, ValueError)
        with pytest.raises(NotFound):
            conn.get_logbook(book.uuid)
        book.flows[0].tasks[1].result = None
        conn.save_logbook(book)
        task = book.flows[0].tasks[0]
        for bad in (Unregistered(), {"nested": [Unregistered()]}, {1: Unregistered()}):
            task.result = bad
            with pytest.raises(SerializationError):
                conn.update_task_details(task)
        task.result = None
        task.checkpoint = object()
        with pytest.raises(SerializationError):
            conn.update_task_details(task)
        assert conn.get_task_details(task.uuid).result == {
            "value": 0,
            "items": [1, 2.5, "three", None, True],
        }

    def test_large_results_round_trip(self, conn: Connection) -> None:
        """16 MB round-trips, or a store that cannot take it refuses it whole (StorageError)."""
        book = make_book(tasks=1)
        big = "x" * (16 * 1024 * 1024)
        book.flows[0].tasks[0].result = big
        try:
            conn.save_logbook(book)
        except StorageError as exc:  # e.g. MySQL's max_allowed_packet: said before writing
            assert "too large" in str(exc), exc
            assert conn.count_logbooks() == 0 and book.revision == 0
            return
        assert conn.get_task_details(book.flows[0].tasks[0].uuid).result == big

    # ---- listing ----------------------------------------------------------------
    def test_get_logbooks_order_paging_and_name(self, conn: Connection) -> None:
        base = datetime(2026, 5, 1, tzinfo=UTC)
        made = []
        for i in range(7):
            # two books share a creation time: uuid breaks the tie
            made.append(
                conn.save_logbook(
                    make_book(f"b{i % 3}", created_at=base + timedelta(seconds=i // 2))
                )
            )
        expected = sorted(made, key=lambda b: (b.created_at, b.uuid))
        assert [b.uuid for b in conn.get_logbooks()] == [b.uuid for b in expected]
        assert [b.uuid for b in conn.get_logbooks(limit=3, offset=2)] == [
            b.uuid for b in expected[2:5]
        ]
        assert [b.uuid for b in conn.get_logbooks(offset=6)] == [expected[6].uuid]
        assert conn.get_logbooks(limit=0) == []
        named = conn.get_logbooks(name="b1")
        assert {b.uuid for b in named} == {b.uuid for b in made if b.name == "b1"}
        assert all(len(b) == 1 for b in named)
        with pytest.raises(ValueError):
            conn.get_logbooks(limit=-1)

    def test_list_and_count_with_state_filter(self, conn: Connection) -> None:
        base = datetime(2026, 5, 1, tzinfo=UTC)
        books = [
            conn.save_logbook(make_book(f"n{i}", created_at=base + timedelta(minutes=i)))
            for i in range(4)
        ]
        books[1].flows[0].state = states.FAILURE
        conn.update_flow_details(books[1].flows[0])
        newest = conn.list_logbooks(newest_first=True, limit=2)
        assert [b.uuid for b in newest] == [books[3].uuid, books[2].uuid]
        assert all(len(b) == 0 for b in newest)
        assert [b.uuid for b in conn.list_logbooks(state=states.FAILURE)] == [books[1].uuid]
        assert conn.count_logbooks() == 4
        assert conn.count_logbooks(state=states.FAILURE) == 1
        assert conn.count_logbooks(name="n2") == 1

    def test_task_state_counts(self, conn: Connection) -> None:
        book = make_book(flows=2, tasks=3)
        book.flows[1].tasks[0].state = states.FAILURE
        conn.save_logbook(book)
        empty = conn.save_logbook(LogBook("empty"))
        counts = conn.task_state_counts([book.uuid, empty.uuid])
        assert counts == {book.uuid: {states.SUCCESS: 5, states.FAILURE: 1}, empty.uuid: {}}

    def test_locate_tells_kind_and_parents(self, conn: Connection) -> None:
        book = conn.save_logbook(make_book())
        flow, task = book.flows[0], book.flows[0].tasks[0]
        assert conn.locate(book.uuid).kind == "book"
        ref = conn.locate(flow.uuid)
        assert (ref.kind, ref.book_uuid) == ("flow", book.uuid)
        ref = conn.locate(task.uuid)
        assert (ref.kind, ref.book_uuid, ref.flow_uuid) == ("task", book.uuid, flow.uuid)

    # ---- concurrency ------------------------------------------------------------
    def test_threads_share_a_backend(self, backend: Backend) -> None:
        errors: list[BaseException] = []
        saved: list[str] = []

        def work(n: int) -> None:
            try:
                with backend.connect() as conn:
                    for i in range(5):
                        book = conn.save_logbook(make_book(f"t{n}-{i}", tasks=2))
                        task = book.flows[0].tasks[0]
                        task.state = states.RUNNING
                        conn.update_task_details(task)
                        saved.append(book.uuid)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with backend.connect() as conn:
            stored = conn.get_logbooks()
        assert sorted(b.uuid for b in stored) == sorted(saved)
        assert all(b.flows[0].tasks[0].state == states.RUNNING for b in stored)

    def test_concurrent_stale_writers_conflict(self, backend: Backend) -> None:
        with backend.connect() as conn:
            book = conn.save_logbook(make_book(tasks=1))
        uuid = book.flows[0].tasks[0].uuid
        outcomes: list[str] = []
        barrier = threading.Barrier(4)

        def writer(n: int) -> None:
            with backend.connect() as conn:
                task = conn.get_task_details(uuid)
                barrier.wait()
                task.result = n
                try:
                    conn.update_task_details(task)
                    outcomes.append("ok")
                except ConflictError:
                    outcomes.append("conflict")

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
        with backend.connect() as conn:
            assert conn.get_task_details(uuid).revision == 2

    def test_copy_between_stores_preserves_all_but_revision(self, conn: Connection) -> None:
        book = make_book(flows=2, tasks=2)
        data = book.to_dict()
        conn.save_logbook(LogBook.from_dict(data))
        loaded = conn.get_logbook(book.uuid)
        assert _strip_revisions(loaded.to_dict()) == _strip_revisions(data)

    def test_errors_share_one_root(self, conn: Connection) -> None:
        with pytest.raises(LedgerflowError):
            conn.get_logbook("missing")
