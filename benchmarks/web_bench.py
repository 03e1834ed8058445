"""Server time of the web view on a big SQLite store (issue 10's speed section).

Builds (or reuses, with --db) cli_bench's store: 100,000 books of one small flow each
plus one book whose flow has 10,000 tasks.  Then times, in-process through Starlette's
test client (the handler, the store reads and the rendering; no network), the books
page at its first page, deep pages by cursor and by offset, filtered by state, and the
flow page of the 10,000-task flow, HTML and JSON; then the flow listing's page 1
against page 2,000 (cursor and offset) on both SQL read paths.  Prints figures;
asserts nothing.

    python benchmarks/web_bench.py [--books 100000] [--tasks 10000] [--db PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_bench import build_store
from starlette.testclient import TestClient

import ledgerflow as lf
from ledgerflow.history import History
from ledgerflow.web import create_app

TARGETS = {"books": 0.050, "flow": 1.0}


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    """(best, median) seconds of GET ``path`` and its size in bytes."""
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        size = len(response.content)
    return min(times), statistics.median(times), size


def deep_cursor(uri: str, skip: int) -> str:
    """The cursor of the page that starts ``skip`` books from the newest."""
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        page = History(conn).books(limit=1, offset=max(0, skip - 1))
    assert page.next is not None
    return page.next


def flow_listing(uri: str, repeat: int) -> None:
    """The read model's flow listing (``ledgerflow flows``): page 1 against a deep page.

    Both read paths: the SQLAlchemy backend and the stdlib reader the CLI uses.
    """
    from ledgerflow.persistence.sql.reader import sqlite_reader

    reader = sqlite_reader(uri)
    assert reader is not None
    with lf.open_backend(uri) as sql:
        for label, backend in (("sqlalchemy", sql), ("reader", reader)):
            with backend.connect() as conn:
                history = History(conn)
                total = conn.count_flows()
                deep = history.flows(limit=1, offset=max(0, total - 60), count=False).next
                page_2000 = history.flows(limit=1, offset=50 * 1999 - 1, count=False).next
                cases = {
                    "page 1": {},
                    "page 2,000 by cursor": {"after": page_2000},
                    "last page by cursor": {"after": deep},
                    "page 2,000 by offset": {"offset": 50 * 1999},
                }
                for name, extra in cases.items():
                    times = []
                    for _ in range(repeat):
                        started = time.perf_counter()
                        history.flows(limit=50, count=False, **extra)  # type: ignore[arg-type]
                        times.append(time.perf_counter() - started)
                    print(
                        f"flows {name:24} {label:10} {min(times) * 1e3:7.1f}ms "
                        f"{statistics.median(times) * 1e3:7.1f}ms  (of {total:,} flows)"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--db", help="reuse (or create) this SQLite file instead of a temp one")
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(options.db) if options.db else Path(tmp) / "bench.db"
        uri = f"sqlite:///{path.resolve()}"
        if path.exists():
            with lf.open_backend(uri) as backend, backend.connect() as conn:
                huge = conn.list_logbooks(name="huge-flow", limit=1)[0]
                flow_uuid = conn.get_logbook(huge.uuid).flows[0].uuid
                total = conn.count_logbooks()
            print(f"reusing {path}: {total:,} books")
        else:
            flow_uuid = build_store(uri, options.books, options.tasks)
            total = options.books + 1
        near_end = deep_cursor(uri, total - 60)
        middle = deep_cursor(uri, total // 2)
        cases = {
            "books page 1": "/",
            "books by cursor, middle": f"/?after={middle}",
            "books by cursor, last page": f"/?after={near_end}",
            "books by offset, middle": f"/?offset={total // 2}",
            "books state=RUNNING": "/?state=RUNNING",
            "api/books page 1": "/api/books",
            "api/books cursor, last": f"/api/books?after={near_end}",
            f"flow page ({options.tasks:,} tasks)": f"/flows/{flow_uuid}",
            f"api/flows ({options.tasks:,} tasks)": f"/api/flows/{flow_uuid}",
        }
        print(f"server time in-process, best and median of {options.repeat}")
        print(f"{'page':34} {'best':>9} {'median':>9} {'bytes':>10}  target")
        with TestClient(create_app(uri)) as client:
            client.get("/")  # warm the template cache and the connection pool
            for name, url in cases.items():
                best, median, size = timed(client, url, options.repeat)
                kind = "flow" if "flow" in name and "api" not in name else "books"
                target = TARGETS[kind] if "api/flows" not in name else None
                ratio = f"<= {target * 1e3:.0f} ms ({best / target:.0%})" if target else ""
                print(f"{name:34} {best * 1e3:7.1f}ms {median * 1e3:7.1f}ms {size:10,}  {ratio}")
        print("read model, flow listing of 50 (no count), best and median:")
        flow_listing(uri, options.repeat)


if __name__ == "__main__":
    main()
