"""``ledgerflow web`` as a real process: it serves, and a port in use is one line, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.cli.conftest import process_env
from tests.web.conftest import make_store


def test_serves_on_localhost_and_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    uuids = make_store(uri)
    server = subprocess.Popen(
        [sys.executable, "-m", "ledgerflow", "--backend", uri, "web", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=process_env(),
        cwd=tmp_path,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # the server says where it listens once it does
        assert "serving" in line and "http://127.0.0.1:" in line, line
        url = line.split("on ", 1)[1].strip().rstrip("/")
        page = httpx.get(f"{url}/flows/{uuids['bad_flow']}", timeout=30)
        assert page.status_code == 200 and "load_rows" in page.text
        port = int(url.rsplit(":", 1)[1])
        busy = subprocess.run(
            [sys.executable, "-m", "ledgerflow", "--backend", uri, "web", "--port", str(port)],
            capture_output=True,
            text=True,
            env=process_env(),
            cwd=tmp_path,
            timeout=60,
        )
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines() == [
            f"Error: port {port} on 127.0.0.1 is in use: pick another with --port"
        ]
    finally:
        server.terminate()
        server.wait(30)


def test_an_unreadable_store_is_a_clear_page_and_the_server_goes_on(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from ledgerflow.web import create_app

    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 100)
    with TestClient(create_app(f"sqlite:///{path}")) as client:
        page = client.get("/")
        assert page.status_code == 503 and "cannot be read" in page.text
        assert "Traceback" not in page.text
        assert client.get("/api/books").json()["status"] == 503
