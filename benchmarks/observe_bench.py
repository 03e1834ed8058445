"""What lifecycle logs and OpenTelemetry spans cost per task (issue 10's speed section).

The 1,000-task in-memory linear flow of engine_bench, run in alternating blocks with:
observation off (no INFO logging, no tracer provider), logs on (a null handler at INFO),
spans on (the SDK with an in-memory exporter), and both.  Prints microseconds per task
and the difference to "off"; targets: off adds nothing, on <= 30 us/task.

    python benchmarks/observe_bench.py [--tasks 1000] [--rounds 7] [--instructions]

``--instructions`` also counts instructions per task under callgrind (valgrind), for
"off", "logs+spans" and the floor (the SDK span and the two records alone, no
ledgerflow): figures that host noise cannot move (the difference of a 1,300- and a
300-task run, so start-up cancels out).
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import linear

import ledgerflow as lf

LOG = logging.getLogger("ledgerflow")
TARGET_ON_US = 30.0


class Switch:
    """Turns logs and spans on and off between runs (the provider is set once, globally)."""

    def __init__(self, processor: str = "simple") -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.trace = trace
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        # simple: each span exported as it ends (tests); batch: queued and exported by the
        # SDK's thread (what production setups use; its CPU is counted too).
        kind = SimpleSpanProcessor if processor == "simple" else BatchSpanProcessor
        self.provider.add_span_processor(kind(self.exporter))
        self.proxy = trace.get_tracer_provider()
        self.handler = logging.NullHandler()
        LOG.addHandler(self.handler)
        LOG.propagate = False

    def set(self, logs: bool, spans: bool) -> None:
        LOG.setLevel(logging.INFO if logs else logging.WARNING)
        # The global provider can only be set once through the API; the benchmark swaps
        # it directly so "off" really has no provider, as a program that never set one.
        self.trace._TRACER_PROVIDER = self.provider if spans else None  # type: ignore[attr-defined]
        self.exporter.clear()


MODES: dict[str, tuple[bool, bool]] = {
    "off": (False, False),
    "logs": (True, False),
    "spans": (False, True),
    "logs+spans": (True, True),
}


def run_once(size: int) -> float:
    """CPU seconds of one run (this process's CPU: steadier than wall time on a shared box)."""
    engine = lf.load(linear(size), backend=lf.open_backend("memory://"))
    gc.collect()
    started = time.process_time()
    engine.run()
    return time.process_time() - started


def measure(size: int, rounds: int, switch: Switch) -> dict[str, float]:
    """Median seconds per run of each mode, modes interleaved round by round."""
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, (logs, spans) in MODES.items():
            switch.set(logs, spans)
            samples[mode].append(run_once(size))
    switch.set(False, False)
    return {mode: statistics.median(values) for mode, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--processor", choices=("simple", "batch"), default="simple")
    parser.add_argument("--instructions", action="store_true")
    options = parser.parse_args()
    switch = Switch(options.processor)
    run_once(options.tasks)  # warm up imports and caches
    medians = measure(options.tasks, options.rounds, switch)
    us: Callable[[float], float] = lambda seconds: seconds / options.tasks * 1e6  # noqa: E731
    off = us(medians["off"])
    print(
        f"{options.tasks}-task memory flow, CPU time, median of {options.rounds} interleaved "
        f"rounds; spans: SDK, {options.processor} span processor, in-memory exporter"
    )
    print(f"{'mode':12} {'us/task':>8} {'vs off':>8}  target")
    for mode, seconds in medians.items():
        extra = us(seconds) - off
        target = "" if mode == "off" else f"<= {TARGET_ON_US:.0f} us/task extra"
        print(f"{mode:12} {us(seconds):8.1f} {extra:+8.1f}  {target}")
    print(f"off: what the hooks cost per task when nothing observes: {off_hooks_ns():.0f} ns")
    span_us, records_us = floor_us(switch)
    print(
        f"floor, outside ledgerflow: one SDK span with the 4 task attributes {span_us:.1f} us, "
        f"two INFO records to a null handler {records_us:.1f} us"
    )
    if options.instructions:
        print_instructions()


INSTRUCTIONS_SNIPPET = """
import logging, sys
sys.path[:0] = sys.argv[1:3]
from observe_bench import LOG, Switch, linear, lf
mode, size = sys.argv[3], int(sys.argv[4])
switch = Switch()
switch.set(mode != "off", mode != "off")
if mode == "floor":
    tracer = switch.provider.get_tracer("ledgerflow")
    parent = switch.trace.set_span_in_context(tracer.start_span("flow"))
    for i in range(size):
        span = tracer.start_span(f"task t{i}", parent, attributes={
            "ledgerflow.flow_uuid": "f" * 36, "ledgerflow.task_uuid": "t" * 36,
            "ledgerflow.task": f"t{i}", "ledgerflow.attempt": 1})
        for message in ("task %s started (attempt %d)", "task %s succeeded (attempt %d)"):
            LOG.handle(LOG.makeRecord(LOG.name, logging.INFO, "", 0, message, (f"t{i}", 1), None))
        span.end()
else:
    lf.load(linear(size), backend="memory://").run()
"""


def print_instructions() -> None:
    """Instructions per task: off, logs+spans, and the floor without ledgerflow."""
    import callgrind

    if not callgrind.available():
        print("instructions: skipped (no valgrind on PATH)")
        return
    here = Path(__file__).resolve().parent
    command = [sys.executable, "-W", "ignore", "-c", INSTRUCTIONS_SNIPPET]
    command += [str(here.parent / "src"), str(here)]
    per_task = {
        mode: callgrind.per_item([*command, mode], 300, 1300)
        for mode in ("off", "logs+spans", "floor")
    }
    extra = per_task["logs+spans"] - per_task["off"]
    print(
        f"instructions per task (callgrind): off {per_task['off']:,.0f} (build, load, run), "
        f"logs+spans {extra:+,.0f} over off, floor (span + two records, no ledgerflow) "
        f"{per_task['floor']:,.0f}: logs+spans = {extra / per_task['floor']:.2f}x the floor"
    )


def floor_us(switch: Switch, calls: int = 20_000) -> tuple[float, float]:
    """Microseconds of what a task's try costs the SDK and logging alone (no ledgerflow)."""
    import timeit

    switch.set(True, True)
    tracer = switch.provider.get_tracer("ledgerflow")
    parent = switch.trace.set_span_in_context(tracer.start_span("flow"))
    attributes = {
        "ledgerflow.flow_uuid": "f" * 36,
        "ledgerflow.task_uuid": "t" * 36,
        "ledgerflow.task": "step",
        "ledgerflow.attempt": 1,
    }

    def span() -> None:
        tracer.start_span("task step", parent, attributes=attributes).end()

    def records() -> None:
        for message in ("task %s started (attempt %d)", "task %s succeeded (attempt %d)"):
            LOG.handle(LOG.makeRecord(LOG.name, logging.INFO, "", 0, message, ("step", 1), None))

    spans = timeit.timeit(span, number=calls) / calls * 1e6
    logs = timeit.timeit(records, number=calls) / calls * 1e6
    switch.set(False, False)
    return spans, logs


def off_hooks_ns(calls: int = 200_000) -> float:
    """Nanoseconds per task of the three calls a task makes into observe when it is off."""
    import timeit

    from ledgerflow.engine import observe

    storage = object()

    def per_task() -> None:
        token = observe.enter(observe.span_context(storage, "t"))  # type: ignore[arg-type]
        observe.leave(token)

    return timeit.timeit(per_task, number=calls) / calls * 1e9


if __name__ == "__main__":
    main()
