"""Tasks on Dask: 200 tasks x 50 ms on a LocalCluster of 2 worker processes (1 thread each).

The ideal is 200 x 0.05 / 2 = 5 s; the target is within 15% of it (ratio <= 1.15).  Bare
Dask (``client.map`` of the same sleeps, nothing persisted) runs beside it for scale.
The ledgerflow runs persist every state change (save="always") to the store named.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

import ledgerflow as lf

TASKS = 200
SECONDS = 0.05
WORKERS = 2
IDEAL = TASKS * SECONDS / WORKERS


class Nap(lf.Task):
    """Sleeps SECONDS, like a task of real work."""

    def execute(self) -> int:
        time.sleep(SECONDS)
        return 1


def wide() -> lf.Flow:
    """TASKS independent naps."""
    return lf.UnorderedFlow("wide", *(Nap(name=f"nap{i}", provides=f"n{i}") for i in range(TASKS)))


def nap(_: int) -> int:
    """What bare Dask runs."""
    time.sleep(SECONDS)
    return 1


def timed_run(client: Client, backend: str) -> float:
    """Seconds for one ledgerflow run of ``wide`` on the cluster."""
    start = time.perf_counter()
    out = lf.run(wide, engine="parallel", executor=client.get_executor(), backend=backend)
    elapsed = time.perf_counter() - start
    assert len(out) == TASKS
    return elapsed


def main() -> int:
    """Print the figures; non-zero exit when a run misses the target."""
    with (
        LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        client.gather(client.map(nap, range(WORKERS * 2), pure=False))  # workers warm
        start = time.perf_counter()
        client.gather(client.map(nap, range(TASKS), pure=False))
        bare = time.perf_counter() - start
        shape = f"{TASKS} tasks x {SECONDS * 1000:.0f} ms on {WORKERS} Dask workers"
        print(f"{shape}; ideal {IDEAL:.2f} s")
        print(f"  bare Dask client.map      {bare:6.2f} s  ratio {bare / IDEAL:.3f}")
        worst = 0.0
        stores = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'runs.db'}"}
        for label, uri in stores.items():
            elapsed = min(timed_run(client, uri) for _ in range(2))
            worst = max(worst, elapsed / IDEAL)
            print(f"  ledgerflow, {label:<7} store {elapsed:6.2f} s  ratio {elapsed / IDEAL:.3f}")
        verdict = "ok" if worst <= 1.15 else "MISSED"
        print(f"  target ratio <= 1.15: {verdict} (worst {worst:.3f})")
        return 0 if worst <= 1.15 else 1


if __name__ == "__main__":
    sys.exit(main())
