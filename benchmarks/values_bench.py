"""Typed values: what the tagged JSON costs next to plain JSON, and per task in the engine.

Prints figures and ratios; never asserts on time.  Run from the repository root:

    python benchmarks/values_bench.py

(a) encoding and decoding a 10 kB value: plain JSON through ledgerflow, the same through
    the bare C json module (the floor), and a 10 kB value of mixed types (datetimes,
    Decimals, UUIDs, tuples, sets, int keys, bytes) through ledgerflow.  Target: mixed <= 2x
    plain.
(b) 1,000 no-op tasks on the memory backend, this tree against another ledgerflow source
    tree (BENCH_BASELINE_SRC, e.g. an export of main: ``git archive main src | tar -x -C
    /tmp/base``), interleaved, best of several runs.  Target: within 5%.
(c) encoding one finished no-op task detail as a row, this tree (and the baseline).
(d) typed values' own cost for plain JSON, in this tree alone: 1,000 tasks returning a
    small plain-JSON dict on memory://, the engine as it is against the same engine with
    the typed-value pass taken out (``serialization.to_json`` returning the value as it
    is, so results go straight to ``json``), interleaved, best of several runs.  No-op
    tasks returning None skip the encoder either way, so they would show nothing here.
    Target: within 5% (ratio <= 1.05).  Where valgrind is installed, the same two engines
    are also counted in instructions per task (callgrind; the difference of a 1,500- and
    a 500-task run, so start-up cancels out): a figure that host noise cannot move.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ledgerflow import serialization  # noqa: E402

_plain_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def plain_value(rows: int) -> list[dict[str, Any]]:
    """Rows of plain JSON: strings, ints, floats, bools, None, nested lists."""
    return [
        {
            "id": i,
            "name": f"item-{i}",
            "price": i * 1.25,
            "active": i % 2 == 0,
            "note": None,
            "tags": ["a", "b", str(i)],
        }
        for i in range(rows)
    ]


def mixed_value(rows: int) -> dict[int, dict[str, Any]]:
    """Rows keyed by int, with datetimes, Decimals, UUIDs, tuples, sets and bytes."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        i: {
            "id": uuid.UUID(int=i),
            "at": start + timedelta(minutes=i),
            "day": date(2026, 1, 1 + i % 28),
            "price": Decimal(f"{i}.25"),
            "span": (i, i + 1),
            "tags": {"a", "b"},
            "raw": b"\x00\x01",
            "name": f"item-{i}",
        }
        for i in range(rows)
    }


def sized(make: Any, target: int = 10_000) -> Any:
    """The value ``make(rows)`` whose encoded text is closest to ``target`` bytes."""
    rows = 1
    while len(serialization.dumps(make(rows), "v")) < target:
        rows += 1
    return make(rows)


def per_call(func: Any, repeat: int = 2000) -> float:
    """Best per-call microseconds over five rounds of ``repeat`` calls."""
    rounds = []
    for _ in range(5):
        gc.collect()
        start = time.perf_counter()
        for _ in range(repeat):
            func()
        rounds.append((time.perf_counter() - start) / repeat * 1e6)
    return min(rounds)


def bench_values() -> None:
    print("(a) a 10 kB value, microseconds per call (best of 5 rounds)")
    plain, mixed = sized(plain_value), sized(mixed_value)
    plain_text = serialization.dumps(plain, "v")
    mixed_text = serialization.dumps(mixed, "v")
    print(f"    plain {len(plain_text)} bytes, mixed {len(mixed_text)} bytes")
    floor_enc = per_call(lambda: _plain_encoder.encode(plain))
    plain_enc = per_call(lambda: serialization.dumps(plain, "v"))
    mixed_enc = per_call(lambda: serialization.dumps(mixed, "v"))
    floor_dec = per_call(lambda: json.loads(plain_text))
    plain_dec = per_call(lambda: serialization.loads(plain_text, "v"))
    mixed_dec = per_call(lambda: serialization.loads(mixed_text, "v"))
    print(f"    encode: C json {floor_enc:7.1f}   plain {plain_enc:7.1f}   mixed {mixed_enc:7.1f}")
    print(f"    decode: C json {floor_dec:7.1f}   plain {plain_dec:7.1f}   mixed {mixed_dec:7.1f}")
    print(
        f"    mixed / plain: encode {mixed_enc / plain_enc:.2f}x, decode "
        f"{mixed_dec / plain_dec:.2f}x   target <= 2x"
    )
    print(
        f"    plain through ledgerflow / bare C json: encode {plain_enc / floor_enc:.2f}x, "
        f"decode {plain_dec / floor_dec:.2f}x"
    )


ENGINE_SNIPPET = """
import gc, sys, time
sys.path.insert(0, sys.argv[1])
import ledgerflow as lf

class Noop(lf.Task):
    def execute(self):
        return None

best = None
for _ in range(int(sys.argv[2])):
    flow = lf.LinearFlow("bench", *(Noop(name=f"t{i}") for i in range(1000)))
    engine = lf.load(flow, backend="memory://")
    gc.collect()
    start = time.perf_counter()
    engine.run()
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(best / size * 1e6)
"""


def engine_us(src: str, runs: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_SNIPPET, src, str(runs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


ROW_SNIPPET = """
import gc, sys, time
sys.path.insert(0, sys.argv[1])
from ledgerflow import states
from ledgerflow.models import TaskDetail, utcnow
from ledgerflow.persistence import records

task = TaskDetail("t", state=states.SUCCESS, result=None, attempts=1)
task.started_at = task.finished_at = utcnow()
if hasattr(task, "tries"):
    task.tries = [{"attempt": 1, "started_at": task.started_at,
                   "finished_at": task.finished_at, "state": "SUCCESS", "failure": None}]
best = None
for _ in range(7):
    gc.collect()
    start = time.perf_counter()
    for _ in range(20000):
        records.task_to_row(task, "flow")
    took = (time.perf_counter() - start) / 20000 * 1e6
    best = took if best is None else min(best, took)
print(best)
"""


def row_us(src: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", ROW_SNIPPET, src], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def bench_rows(baseline: str | None) -> None:
    print("(c) encoding one finished no-op task detail as a row (the write per state change)")
    here = [row_us(str(ROOT / "src")) for _ in range(3)]
    if not baseline:
        print(f"    this tree {min(here):5.2f} us (set BENCH_BASELINE_SRC to compare)")
        return
    there = []
    for _ in range(3):
        there.append(row_us(baseline))
        here.append(row_us(str(ROOT / "src")))
    print(
        f"    this tree {min(here):5.2f} us   baseline {min(there):5.2f} us   "
        f"ratio {min(here) / min(there):.3f}x"
    )


def bench_engine() -> None:
    baseline = os.environ.get("BENCH_BASELINE_SRC")
    print("(b) 1,000 no-op tasks on memory://, microseconds per task (best of 5 runs)")
    here = [engine_us(str(ROOT / "src"), 5) for _ in range(3)]
    if not baseline:
        print(f"    this tree {min(here):6.1f} us/task (set BENCH_BASELINE_SRC to compare)")
        return
    there = []
    for _ in range(3):  # interleaved: the machine is shared, so compare like with like
        there.append(engine_us(baseline, 5))
        here.append(engine_us(str(ROOT / "src"), 5))
    ratio = min(here) / min(there)
    print(f"    this tree {min(here):6.1f}   baseline {min(there):6.1f}   ratio {ratio:.3f}x")
    print("    target: within 5% (ratio <= 1.05)")


PLAIN_RESULT_SNIPPET = """
import gc, sys, time
sys.path.insert(0, sys.argv[1])
import ledgerflow as lf
from ledgerflow import serialization

if sys.argv[2] == "untyped":  # the same engine, results straight to json
    serialization.to_json = lambda value, what: value

class Row(lf.Task):
    def execute(self):
        return {"id": 7, "name": "item-7", "price": 8.75, "tags": ["a", "b"], "ok": True}

size = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
best = None
for _ in range(int(sys.argv[3])):
    flow = lf.LinearFlow("bench", *(Row(name=f"t{i}") for i in range(size)))
    engine = lf.load(flow, backend="memory://")
    gc.collect()
    start = time.perf_counter()
    engine.run()
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(best / size * 1e6)
"""


def plain_result_us(mode: str, runs: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_RESULT_SNIPPET, str(ROOT / "src"), mode, str(runs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def bench_typed_cost() -> None:
    print("(d) 1,000 tasks with a plain-JSON result on memory://, us per task (best of 5 runs)")
    typed, untyped = [], []
    for _ in range(4):  # interleaved: the machine is shared, so compare like with like
        typed.append(plain_result_us("typed", 5))
        untyped.append(plain_result_us("untyped", 5))
    ratio = min(typed) / min(untyped)
    print(
        f"    with typed values {min(typed):6.1f}   results straight to json "
        f"{min(untyped):6.1f}   ratio {ratio:.3f}x   target: within 5% (ratio <= 1.05)"
    )


def bench_typed_instructions() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import callgrind

    if not callgrind.available():
        print("    instructions: skipped (no valgrind on PATH)")
        return
    command = [sys.executable, "-c", PLAIN_RESULT_SNIPPET, str(ROOT / "src")]
    per_task = {
        mode: callgrind.per_item([*command, mode, "1"], 500, 1500) for mode in ("typed", "untyped")
    }
    ratio = per_task["typed"] / per_task["untyped"]
    print(
        f"    instructions per task (callgrind, load and run): with typed values "
        f"{per_task['typed']:,.0f}   straight to json {per_task['untyped']:,.0f}   "
        f"ratio {ratio:.3f}x   target: within 5% (ratio <= 1.05)"
    )


def main() -> None:
    bench_values()
    bench_engine()
    bench_rows(os.environ.get("BENCH_BASELINE_SRC"))
    bench_typed_cost()
    bench_typed_instructions()


if __name__ == "__main__":
    main()
