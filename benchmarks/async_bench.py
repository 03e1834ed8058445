"""Async tasks: per-task cost of ``async def`` no-op tasks next to plain ones.

Prints figures and ratios; never asserts on time.  Run from the repository root:

    python benchmarks/async_bench.py

1,000 no-op tasks on the memory backend (best of 5 runs), sync and async, on the serial
engine, the parallel one, and through ``lf.arun`` from a running event loop.
Target: async <= 40 us per task.  "async - sync" is what an async task adds to the
engine's own per-task cost (storage writes, scheduling), which sync tasks pay too.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import ledgerflow as lf  # noqa: E402

SIZE = 1000


class SyncNoop(lf.Task):
    """Does nothing."""

    def execute(self) -> None:
        return None


class AsyncNoop(lf.Task):
    """Does nothing, asynchronously."""

    async def execute(self) -> None:
        return None


def flow(kind: type[lf.Task]) -> lf.Flow:
    return lf.LinearFlow("bench", *(kind(name=f"t{i}") for i in range(SIZE)))


def timed(kind: type[lf.Task], engine: str) -> float:
    """Seconds of engine.run() for one flow (load excluded)."""
    run = lf.load(flow(kind), backend="memory://", engine=engine)
    gc.collect()
    start = time.perf_counter()
    run.run()
    return time.perf_counter() - start


def timed_arun(kind: type[lf.Task]) -> float:
    async def main() -> float:
        run = lf.load(flow(kind), backend="memory://")
        gc.collect()
        start = time.perf_counter()
        await run.arun()
        return time.perf_counter() - start

    return asyncio.run(main())


def best(measure: Any, *args: Any) -> float:
    return min(measure(*args) for _ in range(5)) / SIZE * 1e6


def main() -> None:
    print(f"{SIZE} no-op tasks on memory://, microseconds per task (best of 5 runs)")
    for engine in ("serial", "parallel"):
        sync, asynchronous = best(timed, SyncNoop, engine), best(timed, AsyncNoop, engine)
        print(
            f"    {engine:8}  sync {sync:6.1f}   async {asynchronous:6.1f}   "
            f"ratio {asynchronous / sync:.2f}x   async - sync {asynchronous - sync:+6.1f}   "
            "target: async <= 40 us"
        )
    sync, asynchronous = best(timed_arun, SyncNoop), best(timed_arun, AsyncNoop)
    print(
        f"    lf.arun   sync {sync:6.1f}   async {asynchronous:6.1f}   "
        f"ratio {asynchronous / sync:.2f}x   async - sync {asynchronous - sync:+6.1f}   "
        "(async tasks on the caller's loop: one thread hop each)"
    )


if __name__ == "__main__":
    main()
