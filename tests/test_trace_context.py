"""Trace context (SPEC section 10): OpenTelemetry's current span's ids on every event
logged inside it, read on the calling thread; none without a recording span."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from conftest import attach, flushed, one
from procs import child_env

trace = pytest.importorskip("opentelemetry.trace", reason="OpenTelemetry's API is not installed")
sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="OpenTelemetry's SDK is not installed")
sampling = pytest.importorskip("opentelemetry.sdk.trace.sampling")

PROVIDER = sdk.TracerProvider()
TRACER = PROVIDER.get_tracer("tests")


def ids_of(span) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def test_an_event_in_a_recording_span_carries_its_ids(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    log.info("outside")
    with TRACER.start_as_current_span("request") as span:
        log.info("inside")
        with TRACER.start_as_current_span("child") as child:
            log.info("deeper")
    events = flushed(h, server)
    assert "trace_id" not in one(events, message="outside")
    inside, deeper = one(events, message="inside"), one(events, message="deeper")
    assert (inside["trace_id"], inside["span_id"]) == ids_of(span)
    assert (deeper["trace_id"], deeper["span_id"]) == ids_of(child)
    assert len(inside["trace_id"]) == 32 and len(inside["span_id"]) == 16
    assert inside["trace_id"] == inside["trace_id"].lower()


def test_each_asyncio_task_sees_its_own_span(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    seen: dict[str, tuple[str, str]] = {}

    async def handle(name: str) -> None:
        with TRACER.start_as_current_span(name) as span:
            seen[name] = ids_of(span)
            await asyncio.sleep(0)
            log.info("in %s", name)

    async def main() -> None:
        await asyncio.gather(handle("a"), handle("b"))

    asyncio.run(main())
    events = flushed(h, server)
    for name in ("a", "b"):
        e = one(events, message=f"in {name}")
        assert (e["trace_id"], e["span_id"]) == seen[name]


def test_a_span_that_is_not_recording_adds_nothing(server, make_handler):
    tracer = sdk.TracerProvider(sampler=sampling.ALWAYS_OFF).get_tracer("off")
    h = make_handler(server.url())
    log = attach(h)
    with tracer.start_as_current_span("sampled out"):
        log.info("not recorded")
    assert "trace_id" not in one(flushed(h, server), message="not recorded")


def test_trace_context_false_turns_it_off(server, make_handler):
    h = make_handler(server.url(), trace_context=False)
    log = attach(h)
    with TRACER.start_as_current_span("request"):
        log.info("inside")
    event = one(flushed(h, server), message="inside")
    assert "trace_id" not in event and "span_id" not in event


def test_extra_may_set_its_own_ids(server, make_handler):
    h = make_handler(server.url())
    log = attach(h)
    with TRACER.start_as_current_span("request"):
        log.info("mine", extra={"trace_id": "from-the-application"})
    assert one(flushed(h, server), message="mine")["trace_id"] == "from-the-application"


def test_the_public_api_gives_the_same_ids(monkeypatch):
    from logship import tracecontext

    fast = tracecontext.reader()
    monkeypatch.setattr(tracecontext, "_context_reader", lambda: None)
    public = tracecontext.reader()
    assert fast is not None and public is not None and fast is not public
    assert fast() is None and public() is None
    with TRACER.start_as_current_span("request") as span:
        expected = dict(zip(("trace_id", "span_id"), ids_of(span), strict=True))
        assert fast() == public() == expected


BLOCK_OTEL = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError("not installed here")
sys.meta_path.insert(0, Block())
"""

CHECK = """
import sys
import logship
assert not any(m.startswith("opentelemetry") for m in sys.modules), "imported at import"
h = logship.ShipHandler(url="http://127.0.0.1:9/x", spill=False)
print(any(m.startswith("opentelemetry") for m in sys.modules))
h.close()
"""


@pytest.mark.parametrize(("installed", "imported"), [(False, "False"), (True, "True")])
def test_importing_logship_never_imports_opentelemetry(installed, imported):
    code = CHECK if installed else BLOCK_OTEL + CHECK
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env()
    )
    assert out.returncode == 0, out.stderr
    # Only a handler looks for it, and imports it only when it is installed.
    assert out.stdout.strip() == imported
