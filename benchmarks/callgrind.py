"""Instructions a command runs, counted by valgrind's callgrind (figures noise cannot move).

Used by the benchmarks that compare two variants too close for a shared machine's
clock: the difference of a large and a small run is the per-item cost, start-up gone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def available() -> bool:
    """Whether valgrind is on PATH."""
    return shutil.which("valgrind") is not None


def instructions(command: Sequence[str]) -> int:
    """Instructions callgrind counts for one run of ``command``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            capture_output=True,
            check=True,
        )
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def per_item(command: Sequence[str], small: int, large: int) -> float:
    """Instructions per item: ``command`` run with ``small`` and ``large`` appended."""
    low = instructions([*command, str(small)])
    high = instructions([*command, str(large)])
    return (high - low) / (large - small)
