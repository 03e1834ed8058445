"""A corrupt stored record: the pages list around it, mark it, and the rest reads on.

Records are corrupted for real: garbage written into their SQL rows with sqlite3
(and, on the servers, with their own drivers through SQLAlchemy), or into the record
files of a file store, bypassing ledgerflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import ledgerflow as lf
from ledgerflow.persistence.files import documents
from ledgerflow.web import create_app
from tests.corrupting import NOT_A_TIME, garble
from tests.web.conftest import make_store

TASKS = "ledgerflow_task_details"
FLOWS = "ledgerflow_flow_details"
BOOKS = "ledgerflow_logbooks"


def _sql_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store of SQL ``kind`` (a server's cleared before and after)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    uri: str = request.getfixturevalue(f"{kind if kind == 'mysql' else 'postgres'}_uri")
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        conn.upgrade()
        conn.clear_all()
        yield uri
        conn.clear_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def corrupt_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store of each SQL kind (the server one cleared before and after)."""
    yield from _sql_store(request.param, request, tmp_path)


@pytest.fixture(params=sorted(NOT_A_TIME))
def time_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """An empty store whose time columns can be made to hold what is no time, and how."""
    for uri in _sql_store(request.param, request, tmp_path):
        yield (uri, *NOT_A_TIME[request.param])


def test_a_corrupt_book_is_marked_on_the_books_page_and_the_rest_listed(
    corrupt_uri: str,
) -> None:
    uuids = make_store(corrupt_uri)
    garble(corrupt_uri, BOOKS, "meta", uuids["bad_book"])
    with TestClient(create_app(corrupt_uri)) as client:
        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert "good-book" in page.text
        assert 'class="corrupt"' in page.text and uuids["bad_book"] in page.text
        assert 'id="corrupt"' in page.text and "ledgerflow check" in page.text
        api = client.get("/api/books")
        assert api.status_code == 200
        items = api.json()["items"]
        assert api.json()["total"] == 2 and len(items) == 2
        assert uuids["bad_book"] in items[0]["corrupt"]  # newest first, in its place
        assert items[1]["uuid"] == uuids["good_book"] and "flow_states" in items[1]
        # The corrupt record's own page names it, without a traceback.
        own = client.get(f"/books/{uuids['bad_book']}")
        assert own.status_code == 500 and "Corrupt record" in own.text
        assert uuids["bad_book"] in own.text and "Traceback" not in own.text
        assert client.get(f"/api/books/{uuids['bad_book']}").json()["status"] == 500


def test_paging_walks_past_a_corrupt_book_one_row_at_a_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    uuids = make_store(uri)
    extra = make_store(uri)  # four books: newest extra's two, then the first two
    garble(uri, BOOKS, "meta", extra["good_book"])
    with TestClient(create_app(uri)) as client:
        seen: list[str] = []
        cursor = None
        for _ in range(6):
            params = {"limit": 1, **({"after": cursor} if cursor else {})}
            page = client.get("/api/books", params=params).json()
            seen.extend(item.get("uuid") or item["corrupt"] for item in page["items"])
            cursor = page["next"]
            if cursor is None:
                break
            html = client.get("/", params=params)
            assert html.status_code == 200 and 'id="next"' in html.text
    assert len(seen) == 4 and cursor is None
    assert extra["good_book"] in seen[1] and "corrupt" in seen[1]
    assert [seen[0], *seen[2:]] == [extra["bad_book"], uuids["bad_book"], uuids["good_book"]]


def test_a_corrupt_task_is_left_out_of_its_flow_and_book_pages_and_named(
    corrupt_uri: str,
) -> None:
    uuids = make_store(corrupt_uri)
    garble(corrupt_uri, TASKS, "result", uuids["extract"])
    with TestClient(create_app(corrupt_uri)) as client:
        flow = client.get(f"/flows/{uuids['bad_flow']}")
        assert flow.status_code == 200, flow.text[:500]
        assert 'id="corrupt"' in flow.text and uuids["extract"] in flow.text
        assert "load_rows" in flow.text and "disk full" in flow.text  # the rest, as usual
        api = client.get(f"/api/flows/{uuids['bad_flow']}").json()
        assert [task.get("name") for task in api["tasks"]] == ["extract", "load_rows"]
        assert uuids["extract"] in api["tasks"][0]["corrupt"]
        assert api["tasks"][1]["uuid"] == uuids["failed_task"] and api["tasks"][1]["failure"]
        book = client.get(f"/books/{uuids['bad_book']}")
        assert book.status_code == 200 and uuids["extract"] in book.text
        assert "load_rows" in book.text
        book_api = client.get(f"/api/books/{uuids['bad_book']}").json()
        assert [entry["uuid"] for entry in book_api["corrupt"]] == [uuids["extract"]]
        task = client.get(f"/tasks/{uuids['extract']}")
        assert task.status_code == 500 and uuids["extract"] in task.text
        assert "Traceback" not in task.text
        assert client.get(f"/tasks/{uuids['failed_task']}").status_code == 200
        assert client.get("/").status_code == 200  # listings do not decode tasks


def test_a_time_column_holding_no_time_is_listed_around(
    time_store: tuple[str, str, tuple[str, ...]],
) -> None:
    uri, garbage, setup = time_store
    uuids = make_store(uri)
    garble(uri, TASKS, "updated_at", uuids["extract"], garbage, setup)
    with TestClient(create_app(uri)) as client:
        flow = client.get(f"/flows/{uuids['bad_flow']}")
        assert flow.status_code == 200, flow.text[:500]
        assert 'id="corrupt"' in flow.text and uuids["extract"] in flow.text
        assert "disk full" in flow.text  # the rest, as usual
        tasks = client.get(f"/api/flows/{uuids['bad_flow']}").json()["tasks"]
        assert uuids["extract"] in tasks[0]["corrupt"] and tasks[1]["uuid"] == uuids["failed_task"]
        own = client.get(f"/tasks/{uuids['extract']}")
        assert own.status_code == 500 and uuids["extract"] in own.text
        garble(uri, FLOWS, "created_at", uuids["bad_flow"], garbage, setup)
        book = client.get(f"/books/{uuids['bad_book']}")
        assert book.status_code == 200, book.text[:500]
        assert 'id="corrupt"' in book.text and uuids["bad_flow"] in book.text
        entries = client.get(f"/api/books/{uuids['bad_book']}").json()["corrupt"]
        assert [entry["uuid"] for entry in entries] == [uuids["bad_flow"]]
        assert client.get(f"/flows/{uuids['bad_flow']}").status_code == 500


def _spoil_file(root: Path, kind: lf.persistence.records.Kind, uuid: str, data: bytes) -> Path:
    """Overwrite the record file of ``uuid`` with ``data``, outside ledgerflow."""
    path = root / documents.record_path(kind, uuid)
    path.write_bytes(data)
    return path


def test_a_file_store_lists_around_corrupt_record_files_and_keeps_them(tmp_path: Path) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    uuids = make_store(uri)
    book_file = _spoil_file(root, "book", uuids["good_book"], b'{"kind": "book", "row": {"na')
    task_file = _spoil_file(root, "task", uuids["extract"], b'{"kind": "task", "row": []}')
    with TestClient(create_app(uri)) as client:
        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert "nightly-run" in page.text and 'class="corrupt"' in page.text
        assert str(book_file) in page.text and 'id="corrupt"' in page.text
        api = client.get("/api/books").json()
        assert api["total"] == 2 and len(api["items"]) == 2
        # Its created_at is lost with the rest: placed by the file's time, newest.
        assert [str(book_file) in item.get("corrupt", "") for item in api["items"]] == [True, False]
        own = client.get(f"/books/{uuids['good_book']}")
        assert own.status_code == 500 and "Corrupt record" in own.text
        assert uuids["good_book"] in own.text and str(book_file) in own.text
        flow = client.get(f"/flows/{uuids['bad_flow']}")
        assert flow.status_code == 200, flow.text[:500]
        assert str(task_file) in flow.text and "disk full" in flow.text
        tasks = client.get(f"/api/flows/{uuids['bad_flow']}").json()["tasks"]
        assert uuids["extract"] in tasks[0]["corrupt"] and tasks[1]["uuid"] == uuids["failed_task"]
        task = client.get(f"/api/tasks/{uuids['extract']}")
        assert task.status_code == 500 and str(task_file) in task.json()["error"]
    assert book_file.read_bytes() == b'{"kind": "book", "row": {"na'  # never rewritten
    assert task_file.read_bytes() == b'{"kind": "task", "row": []}'


def test_a_file_store_book_page_lists_around_a_corrupt_flow_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    uuids = make_store(uri)
    extra = make_store(uri)
    flow_file = _spoil_file(root, "flow", uuids["bad_flow"], b"\x00garbage")
    with TestClient(create_app(uri)) as client:
        book = client.get(f"/books/{uuids['bad_book']}")
        assert book.status_code == 200, book.text[:500]
        assert 'id="corrupt"' in book.text and str(flow_file) in book.text
        assert client.get(f"/books/{extra['bad_book']}").status_code == 200
        assert client.get("/api/books", params={"state": "REVERTED"}).json()["total"] == 1
        own = client.get(f"/flows/{uuids['bad_flow']}")
        assert own.status_code == 500 and str(flow_file) in own.text


#: A flow record file spoiled three ways: not JSON, cut short, and with the wrong types.
SPOILT_FLOW_FILES = {
    "not json": b"\x00garbage",
    "truncated": b'{"kind": "flow", "row": {"na',
    "wrong types": b'{"kind": "flow", "row": {"uuid": 7, "state": []}}',
}


@pytest.mark.parametrize("damage", sorted(SPOILT_FLOW_FILES))
def test_a_file_store_books_page_says_which_flow_file_of_a_book_is_corrupt(
    tmp_path: Path, damage: str
) -> None:
    root = tmp_path / "store"
    uri = f"file://{root}"
    uuids = make_store(uri)
    flow_file = _spoil_file(root, "flow", uuids["bad_flow"], SPOILT_FLOW_FILES[damage])
    with TestClient(create_app(uri)) as client:
        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        [row] = [line for line in page.text.splitlines() if str(flow_file) in line]
        assert "CORRUPT" in row and uuids["bad_flow"] in row  # in the book's counts cells
        assert 'id="corrupt"' in page.text and "good-book" in page.text
        items = client.get("/api/books").json()["items"]
        bad = next(item for item in items if item.get("uuid") == uuids["bad_book"])
        assert bad["name"] == "nightly-run" and bad["flow_states"] is None
        assert str(flow_file) in bad["corrupt"] and uuids["bad_flow"] in bad["corrupt"]
        good = next(item for item in items if item.get("uuid") == uuids["good_book"])
        assert good["flow_states"] == {"SUCCESS": 1} and "corrupt" not in good


def _garble_book(kind: str, tmp_path: Path) -> tuple[str, dict[str, str], str]:
    """A store whose 'nightly-run' book record is corrupt: (uri, uuids, what names it)."""
    if kind == "files":
        root = tmp_path / "store"
        uuids = make_store(f"file://{root}")
        path = _spoil_file(root, "book", uuids["bad_book"], b'{"kind": "book", "row": {"na')
        return f"file://{root}", uuids, str(path)
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    uuids = make_store(uri)
    garble(uri, BOOKS, "meta", uuids["bad_book"])
    return uri, uuids, "meta"


@pytest.mark.parametrize("kind", ["sqlite", "files"])
def test_a_flow_and_task_whose_book_record_is_corrupt_show_with_a_note_naming_it(
    kind: str, tmp_path: Path
) -> None:
    uri, uuids, where = _garble_book(kind, tmp_path)
    with TestClient(create_app(uri)) as client:
        flow = client.get(f"/flows/{uuids['bad_flow']}")
        assert flow.status_code == 200, flow.text[:500]
        assert 'id="corrupt-above"' in flow.text and "The book this flow belongs to" in flow.text
        assert uuids["bad_book"] in flow.text and where in flow.text
        assert "load_rows" in flow.text and "disk full" in flow.text  # the flow, as usual
        api = client.get(f"/api/flows/{uuids['bad_flow']}")
        assert api.status_code == 200, api.text[:500]
        data = api.json()
        assert [task["name"] for task in data["tasks"]] == ["extract", "load_rows"]
        assert data["corrupt_book"]["uuid"] == uuids["bad_book"]
        assert where in data["corrupt_book"]["corrupt"]
        task = client.get(f"/tasks/{uuids['failed_task']}")
        assert task.status_code == 200, task.text[:500]
        assert 'id="corrupt-above"' in task.text and uuids["bad_book"] in task.text
        assert "disk full" in task.text
        assert client.get(f"/api/tasks/{uuids['failed_task']}").json()["corrupt_book"]
        text = client.get(f"/tasks/{uuids['failed_task']}/text/failure")
        assert text.status_code == 200 and "disk full" in text.text
        healthy = client.get(f"/api/flows/{uuids['good_flow']}").json()
        assert "corrupt_book" not in healthy  # only where there is something to say
        own = client.get(f"/books/{uuids['bad_book']}")  # its own page still names it
        assert own.status_code == 500 and uuids["bad_book"] in own.text


def test_a_task_whose_flow_record_is_corrupt_shows_with_a_note_naming_it(
    corrupt_uri: str,
) -> None:
    uuids = make_store(corrupt_uri)
    garble(corrupt_uri, FLOWS, "meta", uuids["bad_flow"])
    with TestClient(create_app(corrupt_uri)) as client:
        task = client.get(f"/tasks/{uuids['failed_task']}")
        assert task.status_code == 200, task.text[:500]
        assert "The flow this task belongs to is corrupt" in task.text
        assert uuids["bad_flow"] in task.text and "nightly-run" in task.text  # the book reads
        data = client.get(f"/api/tasks/{uuids['failed_task']}").json()
        assert data["name"] == "load_rows" and uuids["bad_flow"] in data["corrupt_flow"]["corrupt"]
        assert "corrupt_book" not in data
