"""The web view in a real Chromium (Debian's), driven by Playwright for Python.

Never ``playwright install``: the browser is /usr/bin/chromium (``.ci/run`` installs
it).  Without it the tests skip, except under CI=true, where they fail.
Screenshots of the main pages go to ``artifacts/screenshots`` (not committed).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ledgerflow as lf
from tests.conftest import IN_CI
from tests.web.conftest import make_store

CHROMIUM = Path(os.environ.get("LEDGERFLOW_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why}: CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(why)


if not CHROMIUM.exists():
    _missing(f"no browser at {CHROMIUM} (apt-get install chromium)")
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    _missing("playwright for Python is not installed")
import uvicorn  # noqa: E402

from ledgerflow.web import create_app  # noqa: E402


class LiveServer:
    """uvicorn serving the app on a free port in a background thread."""

    def __init__(self, uri: str) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        config = uvicorn.Config(create_app(uri), log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        ready = threading.Event()
        # uvicorn sets .started once it accepts connections; wait for that state, bounded.
        while not self.server.started and self.thread.is_alive():
            ready.wait(0.01)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_two_clicks_from_the_books_page_to_the_failed_task(browser: Browser, uri: str) -> None:
    uuids = make_store(uri)
    with LiveServer(uri) as server:
        page = browser.new_page()
        page.goto(server.url + "/?state=REVERTED")
        page.get_by_role("link", name="nightly-run").click()
        expect(page.locator("#failed")).to_contain_text("load_rows")
        page.locator("#failed").get_by_role("link", name="load_rows").click()
        expect(page).to_have_url(f"{server.url}/tasks/{uuids['failed_task']}")
        expect(page.locator("h1")).to_contain_text("load_rows")
        expect(page.locator(".failure").first).to_contain_text("disk full")
        page.close()


def test_screenshots_of_the_main_pages_light_and_dark(browser: Browser, uri: str) -> None:
    uuids = make_store(uri)
    with LiveServer(uri) as server:
        for scheme in ("light", "dark"):
            context = browser.new_context(
                color_scheme=scheme, viewport={"width": 1366, "height": 768}
            )
            page = context.new_page()
            for name, path in (
                ("books", "/"),
                ("book", f"/books/{uuids['bad_book']}"),
                ("flow", f"/flows/{uuids['bad_flow']}"),
                ("task", f"/tasks/{uuids['failed_task']}"),
                ("not-found", "/flows/no-such-flow"),
            ):
                page.goto(server.url + path)
                expect(page.locator("h1")).to_be_visible()
                _shot(page, f"{name}-{scheme}")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (background == "rgb(18, 21, 28)") == (scheme == "dark")
            context.close()
    assert len(list(ARTIFACTS.glob("*.png"))) >= 10


gate_started = threading.Event()
gate_open = threading.Event()


@lf.task(provides="waited")
def gate() -> str:
    gate_started.set()
    assert gate_open.wait(60), "the test never opened the gate"
    return "through"


@lf.task
def after(waited: str) -> str:
    return waited


def test_the_flow_page_updates_live_while_the_flow_runs(browser: Browser, uri: str) -> None:
    gate_started.clear()
    gate_open.clear()
    engine = lf.load(lf.LinearFlow("live-flow", gate, after), backend=uri)
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=engine.run()), daemon=True)
    runner.start()
    try:
        assert gate_started.wait(30)
        with LiveServer(uri) as server:
            page = browser.new_page()
            page.goto(f"{server.url}/flows/{engine.flow_detail.uuid}")
            expect(page.locator("#flow-state")).to_have_text("RUNNING")
            expect(page.locator("#live")).to_have_attribute("data-live", "1")
            gate_open.set()
            # The page itself fetches the new state: no reload from the test.
            expect(page.locator("#flow-state")).to_have_text("SUCCESS", timeout=20_000)
            expect(page.locator("#tasks")).to_contain_text("through")
            expect(page.locator("#live")).to_have_attribute("data-live", "0")
            page.close()
    finally:
        gate_open.set()
        runner.join(30)
    assert outcome["result"]["waited"] == "through"
