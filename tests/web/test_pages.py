"""The web view's pages and JSON twins, through Starlette's test client (no browser)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

import ledgerflow as lf
from ledgerflow.web import create_app
from tests.web.conftest import HOSTILE


def test_books_page_lists_books_with_flow_states(client: TestClient, uuids: dict[str, str]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "nightly-run" in page.text and "good-book" in page.text
    assert page.text.index("nightly-run") < page.text.index("good-book")  # newest first
    assert 'class="state s-REVERTED"' in page.text
    only_failed = client.get("/", params={"state": "reverted"}).text
    assert "nightly-run" in only_failed and "good-book" not in only_failed
    by_name = client.get("/", params={"name": "good-book"}).text
    assert "good-book" in by_name and "nightly-run" not in by_name
    nothing = client.get("/", params={"name": "nope"}).text
    assert "No books match these filters" in nothing


def test_search_by_uuid_goes_to_the_record_and_prefix_filters(
    client: TestClient, uuids: dict[str, str]
) -> None:
    found = client.get("/", params={"q": uuids["failed_task"]}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/tasks/{uuids['failed_task']}"
    prefix = client.get("/", params={"q": uuids["bad_book"][:8]}).text
    assert "nightly-run" in prefix


def test_paging_by_cursor_and_bad_parameters(client: TestClient, uuids: dict[str, str]) -> None:
    first = client.get("/api/books", params={"limit": 1}).json()
    assert first["total"] == 2 and len(first["items"]) == 1 and first["next"]
    assert "flows" not in first["items"][0]
    second = client.get("/api/books", params={"limit": 1, "after": first["next"]}).json()
    assert [b["uuid"] for b in first["items"] + second["items"]] == [
        uuids["bad_book"],
        uuids["good_book"],
    ]
    assert second["next"] is None
    for params, word in (
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"after": "garbage!"}, "cursor"),
        ({"state": "bogus"}, "state"),
    ):
        html = client.get("/", params=params)
        assert html.status_code == 400 and word in html.text and "Traceback" not in html.text
        api = client.get("/api/books", params=params)
        assert api.status_code == 400 and word in api.json()["error"]


def test_json_twins_are_the_records_to_dict(client: TestClient, uuids: dict[str, str]) -> None:
    with lf.open_backend(client.app.state.backend.uri) as backend, backend.connect() as conn:  # type: ignore[attr-defined]
        book = conn.get_logbook(uuids["bad_book"]).to_dict()
        flow = conn.get_flow_details(uuids["bad_flow"]).to_dict()
        task = conn.get_task_details(uuids["failed_task"]).to_dict()
    assert client.get(f"/api/books/{uuids['bad_book']}").json() == book
    assert client.get(f"/api/flows/{uuids['bad_flow']}").json() == flow
    assert client.get(f"/api/tasks/{uuids['failed_task']}").json() == task


def test_unknown_and_malformed_uuids_are_404(client: TestClient) -> None:
    for path in ("/books/nope", "/flows/nope", "/tasks/nope", "/flows/%20x"):
        page = client.get(path)
        assert page.status_code == 404 and "Traceback" not in page.text, path
        assert "Not found" in page.text
    api = client.get("/api/flows/nope")
    assert api.status_code == 404 and "nope" in api.json()["error"]
    assert client.get("/api/tasks/" + "x" * 300).status_code == 404


def test_flow_page_has_tree_timeline_tries_and_failure(
    client: TestClient, uuids: dict[str, str]
) -> None:
    page = client.get(f"/flows/{uuids['bad_flow']}").text
    assert "<svg" in page and 'class="f-REVERTED"' in page
    if "tries" in lf.TaskDetail.__dataclass_fields__:  # every try is stored (API.md "Tries")
        assert "source went away" in page  # the failed first try of extract
    assert "2&nbsp;" in page  # extract's second try
    assert "disk full" in page and "traceback" in page
    assert f"/tasks/{uuids['failed_task']}" in page
    assert "free" in page  # owner and lease


def test_task_page_shows_tries_and_truncates_with_a_way_to_see_all(
    client: TestClient, uuids: dict[str, str]
) -> None:
    page = client.get(f"/tasks/{uuids['failed_task']}").text
    assert "RuntimeError" in page and "more characters" in page
    assert "x" * 5000 not in page
    whole = client.get(f"/tasks/{uuids['failed_task']}/text/failure")
    assert whole.headers["content-type"].startswith("text/plain")
    assert "x" * 5000 in whole.text and "Traceback" in whole.text
    assert client.get(f"/tasks/{uuids['failed_task']}/text/nope").status_code == 404


def test_stored_strings_are_escaped(client: TestClient, uuids: dict[str, str]) -> None:
    for path in ("/", f"/books/{uuids['good_book']}", f"/flows/{uuids['good_flow']}"):
        page = client.get(path).text
        assert "<script>alert(1)" not in page, path
        assert "\x1b" not in page, path
    flow_page = client.get(f"/flows/{uuids['good_flow']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m" in flow_page
    assert HOSTILE not in flow_page


def test_read_only_get_only(client: TestClient, uuids: dict[str, str], store_uri: str) -> None:
    path = store_uri.split("///", 1)[1]
    before = os.stat(path).st_mtime_ns
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/api/books")
        assert response.status_code == 405, method
    client.get("/")
    client.get(f"/flows/{uuids['bad_flow']}")
    assert os.stat(path).st_mtime_ns == before


def test_jobs_need_a_board(client: TestClient) -> None:
    assert client.get("/jobs").status_code == 404
    assert "--board" in client.get("/api/jobs").json()["error"]


class _Job:
    def __init__(self, state: str, name: str) -> None:
        self.state, self.name = state, name

    def to_dict(self) -> dict[str, Any]:
        return {
            "uuid": self.name, "name": self.name, "state": self.state, "flow_uuid": None,
            "attempts": 1, "max_attempts": 3, "owner": None, "created_at": "2026-12-02",
            "last_error": "<b>boom</b>",
        }  # fmt: skip


class _Board:
    def jobs(self, *, state: str | None = None, limit: int | None = None) -> list[_Job]:
        jobs = [_Job("READY", "a"), _Job("FAILED", "b")]
        return [job for job in jobs if state is None or job.state == state]


def test_jobs_page_with_a_board(store_uri: str, uuids: dict[str, str]) -> None:
    with TestClient(create_app(store_uri, board=_Board())) as client:
        page = client.get("/jobs").text
        assert "1 <span" in page and "FAILED" in page and "&lt;b&gt;boom" in page
        assert [j["name"] for j in client.get("/api/jobs?state=failed").json()["items"]] == ["b"]


def test_a_missing_store_is_one_clear_page_and_the_server_goes_on(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    with TestClient(create_app(uri)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "no ledgerflow schema" in page.text
        assert client.get("/flows/abc").status_code == 404
        assert client.get("/").status_code == 200
    assert not list(tmp_path.glob("absent.db*"))


def test_loopback_binding_refuses_other_host_headers(store_uri: str, uuids: dict[str, str]) -> None:
    from ledgerflow.cli.web import allowed_hosts

    assert allowed_hosts("0.0.0.0") is None
    app = create_app(store_uri, allowed_hosts=allowed_hosts("127.0.0.1"))
    for base, status in (
        ("http://127.0.0.1:8080", 200),
        ("http://localhost:8080", 200),
        ("http://evil.example:8080", 400),  # a rebinding page names its own host
    ):
        with TestClient(app, base_url=base) as client:
            assert client.get("/").status_code == status, base


def test_a_megabyte_of_text_is_clipped_with_a_link_to_all_of_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'big.db'}"
    huge = "<b>" + "y" * 1_000_000

    @lf.task(provides="blob")
    def blob() -> str:
        return huge

    engine = lf.load(lf.LinearFlow("big", blob), backend=uri)
    engine.run()
    task_uuid = engine.flow_detail.tasks[0].uuid
    with TestClient(create_app(uri)) as client:
        page = client.get(f"/tasks/{task_uuid}")
        assert len(page.text) < 100_000 and "<b>yyy" not in page.text
        assert "&lt;b&gt;yyy" in page.text and "more characters" in page.text
        assert f"/tasks/{task_uuid}/text/result" in page.text
        flow_page = client.get(f"/flows/{engine.flow_detail.uuid}")
        assert len(flow_page.text) < 100_000
        whole = client.get(f"/tasks/{task_uuid}/text/result")
        assert huge in whole.text and whole.headers["content-type"].startswith("text/plain")
