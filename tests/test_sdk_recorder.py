"""What a call records off its call path (llmmeter.recorder): the span's end, metric points, the prompt."""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter import recorder
from llmmeter_collector.devtools.fakeprovider import FakeProvider
from tests.conftest import export_to, stop_export
from tests.sdk_support import instrumented_with, only_span, points

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="x")


def _llm(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "llmmeter"]


def test_span_ends_in_the_background_with_the_calls_own_end_time(client, instrumented) -> None:  # type: ignore[no-untyped-def]
    plain = InMemorySpanExporter()  # read without any flush: only the recorder thread can end the span
    processor = export_to(plain)
    try:
        before = time.time_ns()
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        returned = time.time_ns()
        deadline = time.monotonic() + 5
        while not _llm(plain) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop_export(processor)
    (span,) = _llm(plain)
    assert before <= span.start_time <= span.end_time <= returned  # timed on the call path, not when recorded
    assert span.attributes["gen_ai.usage.input_tokens"] == 12 and span.attributes["gen_ai.request.stream"] is False


def test_force_flush_ends_every_span_of_a_returned_call(client, instrumented) -> None:  # type: ignore[no-untyped-def]
    plain = InMemorySpanExporter()
    processor = export_to(plain)
    try:
        for _ in range(20):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        assert len(_llm(plain)) == 20  # at once: a flush (e.g. before a serverless freeze) misses nothing
    finally:
        stop_export(processor)


def test_metrics_of_a_call_are_in_the_next_collection(client, instrumented, metric_reader) -> None:  # type: ignore[no-untyped-def]
    client.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=MSG)
    (duration,) = [p for p in points(metric_reader, "gen_ai.client.operation.duration")
                   if p.attributes["gen_ai.request.model"] == "gpt-4o-mini-2024-07-18"]  # fmt: skip
    assert duration.count == 1 and duration.sum > 0


def test_fingerprint_is_of_what_was_sent_not_of_the_list_after_the_call(client, instrumented, spans) -> None:  # type: ignore[no-untyped-def]
    sent = [{"role": "user", "content": "first question"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=sent)
    once = only_span(spans)["llmmeter.prompt.fingerprint"]
    spans.clear()

    conversation = [{"role": "user", "content": "first question"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=conversation)
    conversation.append({"role": "assistant", "content": reply.choices[0].message.content})  # the usual chat loop
    conversation.append({"role": "user", "content": "second question"})
    assert only_span(spans)["llmmeter.prompt.fingerprint"] == once


def test_a_forked_child_does_not_end_the_parents_queued_spans() -> None:
    ended: list[int] = []  # who ended the queued span (a pre-fork server's worker would export it again)
    read, write = os.pipe()
    recorder.later(lambda: ended.append(os.getpid()))
    pid = os.fork()
    if pid == 0:  # the child: a drain must find nothing of the parent's
        try:
            recorder.drain()
            os.write(write, b"%d" % len(ended))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    assert os.read(read, 16) == b"0"
    recorder.drain()
    assert ended == [os.getpid()]  # the parent ended it, once


def test_uninstrument_restores_the_tracer_providers_flush_and_shutdown() -> None:
    originals = (TracerProvider.__dict__["force_flush"], TracerProvider.__dict__["shutdown"])
    llmmeter.instrument(configure_export=False)
    hooked = (TracerProvider.__dict__["force_flush"], TracerProvider.__dict__["shutdown"])
    llmmeter.uninstrument()
    assert all(h is not o for h, o in zip(hooked, originals, strict=True))
    assert (TracerProvider.__dict__["force_flush"], TracerProvider.__dict__["shutdown"]) == originals


def test_the_recorder_thread_outlives_a_failure_outside_the_queues(client, instrumented, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken() -> None:
        raise RuntimeError("a meter provider that fails outside any queued item")

    monkeypatch.setattr(recorder, "drain_metrics", broken)
    plain = InMemorySpanExporter()
    processor = export_to(plain)
    try:
        for expected in (1, 2):  # the second call is ended by the same thread, after the failure
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            deadline = time.monotonic() + 5
            while len(_llm(plain)) < expected and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(_llm(plain)) == expected
    finally:
        stop_export(processor)


@pytest.mark.parametrize("capture", [False, True])
def test_a_response_the_app_dropped_is_freed_unless_its_content_is_still_to_be_rendered(client, spans, capture) -> None:  # type: ignore[no-untyped-def]
    setup = instrumented_with(capture_content=capture)
    next(setup)
    try:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        kept = weakref.ref(reply)
        del reply
        # Without capture its usage was read during the call: nothing keeps it alive for the garbage collector to
        # promote. With capture the recorder renders its output later, and only then lets it go.
        assert (kept() is not None) is capture
        llmmeter.flush()
        assert kept() is None
        span = only_span(spans)
        assert span["gen_ai.usage.input_tokens"] == 12  # the fake provider's usage
        assert ("gen_ai.output.messages" in span) is capture
    finally:
        next(setup, None)


def test_a_flush_waits_for_the_span_the_recorder_thread_is_ending() -> None:
    taken, release = threading.Event(), threading.Event()
    ended: list[bool] = []

    def slow_end() -> None:  # a span whose end is slow (a synchronous export), taken by the recorder thread
        taken.set()
        release.wait(5)
        ended.append(True)

    recorder.later(slow_end)
    assert taken.wait(5)  # the recorder thread holds it: the queue is empty
    seen_at_return: list[list[bool]] = []
    flusher = threading.Thread(target=lambda: (recorder.drain_spans(), seen_at_return.append(list(ended))))
    flusher.start()
    flusher.join(0.3)
    assert flusher.is_alive() and not seen_at_return  # the flush (force_flush before exit) waits for it ...
    release.set()
    flusher.join(5)
    assert seen_at_return == [[True]]  # ... and returns once it has ended: an exporter shut down next gets it


def test_a_flush_from_inside_a_queued_item_does_not_wait_for_itself() -> None:
    # A span processor whose on_end flushes the provider runs inside the item that ends the span.
    flushed: list[float] = []
    recorder.later(lambda: (recorder.drain_spans(), flushed.append(time.monotonic())))
    start = time.monotonic()
    recorder.drain_spans()
    assert len(flushed) == 1 and flushed[0] - start < recorder.FLUSH_WAIT_SECONDS / 2


def test_draining_metrics_while_another_thread_instruments_does_not_fail() -> None:
    """The recorder thread drains every instrument()'s metric queue while the app may be instrumenting again."""
    from opentelemetry.sdk.metrics import MeterProvider

    meter = MeterProvider().get_meter("race")
    histogram = meter.create_histogram("race")
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.0

    def drain() -> None:
        while time.monotonic() < stop:
            try:
                recorder.drain_metrics(wait=False)
            except Exception as exc:
                errors.append(exc)
                return

    drainer = threading.Thread(target=drain)
    drainer.start()
    made = 0
    while drainer.is_alive():
        recorder.CallMetrics(meter, histogram, histogram, histogram)  # and dropped: weakly held, removed again
        made += 1
    drainer.join()
    assert made > 100 and errors == []


def test_the_recorder_thread_wakes_less_often_when_calls_are_few() -> None:
    """Every wake-up takes the GIL from the app: ten a second only while calls keep coming, one a second idle."""
    busy, idle = recorder.DRAIN_SECONDS, recorder.IDLE_DRAIN_SECONDS
    assert recorder.next_interval(busy, 60) == busy  # 600 calls/s: every 0.1 s, 60 items a burst
    assert recorder.next_interval(busy, 0) == idle  # nothing queued: once a second
    assert recorder.next_interval(idle, 6) == idle  # a stream every 160 ms: its spans end within a second
    rate = 40  # calls/s: woken for about DRAIN_BATCH of them
    interval = recorder.next_interval(busy, int(rate * busy))
    assert interval == pytest.approx(recorder.DRAIN_BATCH / rate)
    assert recorder.next_interval(interval, int(rate * interval)) == pytest.approx(interval)  # and stays there


@pytest.fixture
def inline() -> Any:
    yield from instrumented_with(recording="inline")


def test_inline_recording_has_the_span_and_points_before_the_call_returns(client, inline, metric_reader) -> None:  # type: ignore[no-untyped-def]
    plain = InMemorySpanExporter()  # read without any flush
    processor = export_to(plain)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        for _ in stream:
            pass
        (span, streamed) = _llm(plain)  # visible right away, nothing flushed
    finally:
        stop_export(processor)
    assert span.attributes["gen_ai.usage.input_tokens"] == 12 and span.attributes["gen_ai.request.stream"] is False
    assert streamed.attributes["gen_ai.request.stream"] is True
    assert len(recorder._work) == 0 and all(len(m.queue) == 0 for m in recorder._live_metrics())


def test_recording_mode_comes_from_the_environment_and_a_bad_one_is_named(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from llmmeter import options

    monkeypatch.setenv(options.RECORDING_ENV, "inline")
    assert options.build().inline is True
    assert options.build(recording="deferred").inline is False
    monkeypatch.setenv(options.RECORDING_ENV, "sometimes")
    with pytest.raises(ValueError, match="LLMMETER_RECORDING"):
        options.build()
