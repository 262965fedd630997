"""The C attribute reader (llmmeter_collector/ingest/_otlp_fields.c) against the Python one it stands in for."""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmmeter_collector.ingest import normalize as nm

ODD_VALUES: list[Any] = [
    "", "text", "émoji 🚀 \t\n\\", 0, -1, 2**63 - 1, -(2**63), 0.0, -0.5, 1e300, True, False, b"\x00\xff", None,
]  # fmt: skip
NESTED: list[Any] = [["a", 1], {"k": "v"}]  # arrays and key-value lists: the span is left to the Python reader
KEYS = [*nm._SPAN_FIELDS, "llmmeter.tag.team", "llmmeter.tag.", "llmmeter.tag", "gen_ai.prompt", "", "x" * 300]


def any_value(v: Any) -> AnyValue:
    """An OTLP AnyValue holding ``v`` (None: an unset one)."""
    if v is None:
        return AnyValue()
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(x) for x in v)
        return out
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(x)) for k, x in v.items())
        return out
    return AnyValue(string_value=v)


def _request(rng: random.Random, spans: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(rng.randint(1, 3)):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name", value=any_value("svc"))
        for _ in range(rng.randint(1, 2)):
            scope = resource_spans.scope_spans.add()
            for _ in range(spans):
                span = scope.spans.add(name="chat", trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
                span.events.add(name="e").attributes.add(key="gen_ai.usage.input_tokens", value=any_value(999))
                for _ in range(rng.randint(0, 25)):  # duplicates and every naming variant, in any order
                    key = rng.choice(KEYS)
                    draw = rng.random()
                    value = rng.choice(NESTED if draw < 0.02 else ODD_VALUES if draw < 0.3 else ["openai", 12, "gpt"])
                    span.attributes.add(key=key, value=any_value(value))
    return request


def _python(request: ExportTraceServiceRequest) -> list[Any]:
    return [
        nm._fields(span.attributes)
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]


def test_the_c_reader_reads_every_span_as_the_python_one_does() -> None:
    assert nm._c_span_fields is not None, "the C attribute reader was not built (hatch_build.py)"
    rng = random.Random(11)
    left_to_python = total = 0
    for _ in range(300):
        request = _request(rng, spans=rng.randint(1, 4))
        read = nm._c_span_fields(request.SerializeToString(), nm._SPAN_FIELDS, nm._TAG_PREFIX)
        expected = _python(request)
        assert len(read) == len(expected)
        total += len(expected)
        for got, want in zip(read, expected, strict=True):
            if got is None:  # an array or kvlist value: this span is read in Python
                left_to_python += 1
                continue
            assert got == tuple(want)
            assert [type(v) for v in got[0].values()] == [type(v) for v in want[0].values()]
    assert 0 < left_to_python < total // 2  # both paths were taken, most spans in C


def test_bytes_that_are_not_protobuf_raise_value_error_and_never_crash() -> None:
    assert nm._c_span_fields is not None
    rng = random.Random(5)
    body = _request(rng, spans=3).SerializeToString()
    outcomes = {"read": 0, "refused": 0}
    for i in range(3000):
        mutated = bytearray(body)
        if i % 3 == 0:
            del mutated[rng.randrange(len(mutated)) :]  # truncated
        else:
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            result = nm._c_span_fields(bytes(mutated), nm._SPAN_FIELDS, nm._TAG_PREFIX)
        except ValueError:
            outcomes["refused"] += 1
            continue
        assert isinstance(result, list)
        outcomes["read"] += 1
        try:  # what the protobuf runtime accepts, the collector reads alike whichever reader ran
            request = ExportTraceServiceRequest.FromString(bytes(mutated))
        except DecodeError:
            continue
        if len(result) == len(_python(request)):
            for got, want in zip(result, _python(request), strict=True):
                assert got is None or got == tuple(want)
    assert outcomes["read"] and outcomes["refused"]
