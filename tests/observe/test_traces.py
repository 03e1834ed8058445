"""OpenTelemetry spans per flow run and task try, tested with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

otel_trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

import ledgerflow as lf  # noqa: E402

EXPORTER = InMemorySpanExporter()
_PROVIDER = sdk_trace.TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
seen: dict[str, object] = {}


@pytest.fixture(autouse=True)
def provider() -> Iterator[None]:
    # The global provider can be set once per process; the tests share this one.
    if not isinstance(otel_trace.get_tracer_provider(), sdk_trace.TracerProvider):
        otel_trace.set_tracer_provider(_PROVIDER)
    EXPORTER.clear()
    seen.clear()
    yield


@lf.task(provides="n", retry=lf.Retry(attempts=2, backoff=0.0))
def nested(n: int = 1) -> int:
    tracer = otel_trace.get_tracer("user")
    with tracer.start_as_current_span("user work"):
        pass
    seen.setdefault("tries", 0)
    seen["tries"] = int(seen["tries"]) + 1  # type: ignore[call-overload]
    if seen["tries"] == 1:
        raise RuntimeError("try one fails")
    return n


@lf.task
def explode(n: int) -> None:
    raise ValueError("exploded on purpose")


def _by_name() -> dict[str, list[object]]:
    spans: dict[str, list[object]] = {}
    for span in EXPORTER.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def test_a_span_per_flow_run_and_task_try_with_attributes() -> None:
    engine = lf.load(lf.LinearFlow("traced", nested), engine="parallel")
    engine.run()
    spans = _by_name()
    (flow_span,) = spans["flow traced"]
    tries = spans["task nested"]
    assert [s.attributes["ledgerflow.attempt"] for s in tries] == [1, 2]  # type: ignore[attr-defined]
    flow_uuid = engine.flow_detail.uuid
    task_uuid = engine.flow_detail.tasks[0].uuid
    for span in tries:
        assert span.parent.span_id == flow_span.context.span_id  # type: ignore[attr-defined]
        assert span.attributes["ledgerflow.flow_uuid"] == flow_uuid  # type: ignore[attr-defined]
        assert span.attributes["ledgerflow.task_uuid"] == task_uuid  # type: ignore[attr-defined]
        assert span.attributes["ledgerflow.task"] == "nested"  # type: ignore[attr-defined]
    first, second = tries
    assert first.status.status_code == StatusCode.ERROR  # type: ignore[attr-defined]
    assert first.events[0].name == "exception"  # type: ignore[attr-defined]
    assert "try one fails" in first.events[0].attributes["exception.message"]  # type: ignore[attr-defined]
    assert second.status.status_code != StatusCode.ERROR  # type: ignore[attr-defined]
    # The user's span ran in the executor's thread, nested under the try's span.
    user = spans["user work"]
    assert [u.parent.span_id for u in user] == [t.context.span_id for t in tries]  # type: ignore[attr-defined]
    stored = engine.flow_detail.meta["trace"]
    assert stored["trace_id"] == f"{flow_span.context.trace_id:032x}"  # type: ignore[attr-defined]


def test_a_failed_flow_has_error_status_and_the_exception(tmp_path: Path) -> None:
    seen["tries"] = 1  # nested succeeds at once
    with pytest.raises(lf.FlowFailed):
        lf.run(lf.LinearFlow("doomed", nested, explode))
    spans = _by_name()
    (flow_span,) = spans["flow doomed"]
    assert flow_span.status.status_code == StatusCode.ERROR  # type: ignore[attr-defined]
    (explode_span,) = spans["task explode"]
    assert explode_span.status.status_code == StatusCode.ERROR  # type: ignore[attr-defined]
    event = explode_span.events[0]  # type: ignore[attr-defined]
    assert event.attributes["exception.type"].endswith("ValueError")
    assert "exploded on purpose" in event.attributes["exception.message"]
    assert "Traceback" in event.attributes["exception.stacktrace"]


def test_a_resumed_run_links_to_the_first_trace(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    seen["tries"] = 1
    engine = lf.load(lf.LinearFlow("twice", nested, explode), backend=uri)
    with pytest.raises(lf.FlowFailed):
        engine.run()
    first = _by_name()["flow twice"][0]
    EXPORTER.clear()
    with pytest.raises(lf.FlowFailed):
        lf.resume(uri, engine.flow_detail.uuid, flow=lf.LinearFlow("twice", nested, explode))
    (again,) = _by_name()["flow twice"]
    (link,) = again.links  # type: ignore[attr-defined]
    assert link.context.trace_id == first.context.trace_id  # type: ignore[attr-defined]
    assert link.context.span_id == first.context.span_id  # type: ignore[attr-defined]
    with lf.open_backend(uri) as backend, backend.connect() as conn:
        meta = conn.get_flow_details(engine.flow_detail.uuid, lazy=True).meta
    assert meta["trace"]["span_id"] == f"{first.context.span_id:016x}"  # type: ignore[attr-defined]
