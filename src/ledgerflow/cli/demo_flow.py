"""The flow ``ledgerflow demo`` runs: publish a snapshot of a dataset.

``build`` is the factory the engine records by import path
(``ledgerflow.cli.demo_flow:build``), so ``lf.resume`` rebuilds the flow from the
store alone, in another process than the one that started it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import ledgerflow as lf

__all__ = ["CHUNKS", "FACTORY", "STORE", "build"]

FACTORY = "ledgerflow.cli.demo_flow:build"
STORE = {"dataset": "sales-2026-q4", "size_gb": 40}
#: The copy moves the data in chunks and checkpoints after each one.
CHUNKS = 8
CHUNK_SECONDS = 0.3
STEP_SECONDS = 0.15


@lf.task(provides="volume")
def reserve_volume(dataset: str, size_gb: int) -> dict[str, Any]:
    """Reserve a scratch volume big enough for the dataset."""
    time.sleep(STEP_SECONDS)
    return {"volume_id": f"vol-{dataset}", "size_gb": size_gb}


@reserve_volume.revert
def release_volume(
    dataset: str, size_gb: int, *, result: Any, flow_failures: dict[str, lf.Failure]
) -> None:
    """Give the volume back when a later step failed."""
    time.sleep(STEP_SECONDS)


@lf.task(provides="lease")
def lock_dataset(dataset: str) -> str:
    """Take a write lease so nobody changes the dataset while it is copied."""
    time.sleep(STEP_SECONDS)
    return f"lease-{dataset}"


@lock_dataset.revert
def unlock_dataset(dataset: str, *, result: Any, flow_failures: dict[str, lf.Failure]) -> None:
    """Drop the lease when a later step failed."""


@lf.task(provides="copied")
def copy_data(dataset: str, volume: dict[str, Any]) -> dict[str, Any]:
    """Copy the dataset chunk by chunk, checkpointing so a crash loses one chunk at most."""
    ctx = lf.current_task()
    start = int(ctx.last_checkpoint or 0)
    for chunk in range(start, CHUNKS):
        time.sleep(CHUNK_SECONDS)
        ctx.checkpoint(chunk + 1)
    return {"chunks": CHUNKS, "resumed_at_chunk": start, "volume_id": volume["volume_id"]}


@lf.task(provides="checksum", retry=lf.Retry(attempts=3, backoff=0.2))
def verify(dataset: str, copied: dict[str, Any]) -> str:
    """Checksum the copy; the checksum service times out once, and the retry succeeds."""
    ctx = lf.current_task()
    if ctx.last_checkpoint is None:
        ctx.checkpoint("first probe timed out")
        raise TimeoutError("checksum service did not answer within 2s")
    time.sleep(STEP_SECONDS)
    return "sha256:" + hashlib.sha256(f"{dataset}/{copied['chunks']}".encode()).hexdigest()[:16]


@lf.task(provides="url")
def publish(dataset: str, checksum: str, lease: str) -> str:
    """Publish the verified snapshot and return where it lives."""
    time.sleep(STEP_SECONDS)
    return f"https://data.example.com/{dataset}@{checksum.removeprefix('sha256:')[:8]}"


@publish.revert
def unpublish(
    dataset: str, checksum: str, lease: str, *, result: Any, flow_failures: dict[str, lf.Failure]
) -> None:
    """Withdraw the snapshot when a later step failed."""


def build() -> Any:
    """Return the demo flow: reserve, lock, copy, verify, publish."""
    return lf.LinearFlow(
        "publish-dataset", reserve_volume, lock_dataset, copy_data, verify, publish
    )
