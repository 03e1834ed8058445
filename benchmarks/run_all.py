"""Run every benchmark in turn (``make bench``); each prints its own figures and ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "persistence_bench.py",
    "file_backend.py",
    "engine_bench.py",
    "sqlite_anatomy.py",
    "cli_bench.py",
    "web_bench.py",
    "observe_bench.py",
    "field_checks.py",
    "care_bench.py",
    "values_bench.py",
    "async_bench.py",
    "rivals_bench.py",
    "takeover_bench.py",
    "dask_bench.py",
]


def main() -> int:
    """Run each benchmark script with this interpreter; return non-zero if one failed."""
    failed = []
    for script in SCRIPTS:
        print(f"\n######## {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
