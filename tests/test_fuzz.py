"""A seeded, bounded fuzz of the OTLP edge: whatever a client sends, the collector answers 2xx/4xx (never a 5xx,
never gRPC INTERNAL/UNKNOWN), keeps running, and still stores a valid span afterwards.

The collector is a real process (``python -m llmmeter_collector``) on a real Postgres. Bodies (fixed seed, so
every run sends the same ones): mutated valid protobufs, random bytes, hostile OTLP/JSON (deep nesting, NaN and
Infinity, huge numbers, NUL, lone surrogates, wrong types), and gzip variants (concatenated members, trailing
garbage, truncated streams) over OTLP/HTTP, and mutated protobufs over OTLP/gRPC.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from .test_collector_shutdown import _free_port, _wait_ready
from .test_receiver import CHAT, PROTOBUF

SEED = 20261203
JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Encoding": "gzip"}
HTTP_ANSWERS = {200, 400, 413, 415}  # what a client may get for a body; 5xx never
GRPC_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture
def collector_process(database_url: str, pg_schema: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A collector process: (HTTP base URL, gRPC target, its stderr log)."""
    port, grpc_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "LLMMETER_DATABASE_URL": database_url,
        "LLMMETER_DATABASE_SCHEMA": pg_schema,
        "LLMMETER_HTTP_PORT": str(port),
        "LLMMETER_GRPC_PORT": str(grpc_port),
        "LLMMETER_DATA_DIR": str(tmp_path / "data"),
        "LLMMETER_MAX_BODY_BYTES": str(1 << 20),
    }
    log = tmp_path / "collector.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "llmmeter_collector"], env=env, stdout=err, stderr=err)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            yield url, f"127.0.0.1:{grpc_port}", log
            assert proc.poll() is None, "the collector process died during the fuzz"
        finally:
            proc.terminate()
            proc.wait(30)


# --- valid material to mutate --------------------------------------------------------------------------


def _value(rng: random.Random, depth: int = 0) -> AnyValue:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return AnyValue(string_value=rng.choice(["gpt-4o", "", "x" * rng.randrange(300), "naïve 🙂", "a\x00b"]))
    if kind == 1:
        return AnyValue(int_value=rng.choice([0, 1, -1, 2**63 - 1, -(2**63), 10**12, 1000]))
    if kind == 2:
        return AnyValue(double_value=rng.choice([0.5, float("inf"), float("-inf"), float("nan"), 1e308, -0.0]))
    if kind == 3:
        return AnyValue(bool_value=rng.random() < 0.5)
    if kind == 4:
        return AnyValue(array_value=ArrayValue(values=[_value(rng, depth + 1) for _ in range(rng.randrange(3))]))
    if kind == 5:
        kvs = [KeyValue(key=f"k{i}", value=_value(rng, depth + 1)) for i in range(rng.randrange(3))]
        return AnyValue(kvlist_value=KeyValueList(values=kvs))
    return AnyValue(bytes_value=rng.randbytes(rng.randrange(20)))


_KEYS = [
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.request.model", "gen_ai.response.model", "gen_ai.response.id", "gen_ai.usage.cost",
    "gen_ai.server.time_to_first_token", "gen_ai.response.time_to_first_chunk", "llmmeter.project",
    "llmmeter.feature", "user.id", "session.id", "llmmeter.environment", "llmmeter.experiment", "llmmeter.variant",
    "llmmeter.tag.team", "llmmeter.tag.", "error.type", "llmmeter.retries", "gen_ai.request.stream",
    "llmmeter.billable", "openai.response.service_tier",
]  # fmt: skip


def _valid_request(rng: random.Random, now_ns: int) -> ExportTraceServiceRequest:
    """An export of a few GenAI spans, some with one attribute replaced by an odd but well-typed value."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="fuzz"))
    spans = rs.scope_spans.add().spans
    for _ in range(rng.randrange(1, 6)):
        span = spans.add()
        span.trace_id = rng.randbytes(16)
        span.span_id = rng.randbytes(8)
        span.name = "chat gpt-4o-mini"
        span.start_time_unix_nano = now_ns - rng.randrange(10**12)
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(10**10)
        attrs = {**CHAT, "llmmeter.project": "fuzz", "llmmeter.tag.team": "edge"}
        for key, value in attrs.items():
            v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))
            span.attributes.add(key=key, value=v)
        if rng.random() < 0.7:
            span.attributes.add(key=rng.choice(_KEYS), value=_value(rng))
    return request


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(6)
        i = rng.randrange(len(out) + 1)
        if op == 0 and out:  # flip a byte
            out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            out[i:i] = rng.randbytes(rng.randrange(1, 8))
        elif op == 2:  # delete a slice
            del out[i : i + rng.randrange(1, 16)]
        elif op == 3:  # duplicate a slice
            out[i:i] = out[i : i + rng.randrange(1, 64)]
        elif op == 4:  # truncate
            del out[i:]
        else:  # a huge varint / length
            out[i:i] = b"\xff" * rng.randrange(1, 11)
    return bytes(out)


# --- hostile OTLP/JSON ---------------------------------------------------------------------------------


def _json_span(rng: random.Random, now_ns: int, attributes: list[Any]) -> dict[str, Any]:
    return {
        "traceId": rng.randbytes(16).hex(),
        "spanId": rng.randbytes(8).hex(),
        "name": "chat",
        "startTimeUnixNano": str(now_ns - rng.randrange(10**12)),
        "endTimeUnixNano": str(now_ns),
        "attributes": [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            *attributes,
        ],
    }


_HOSTILE_VALUES: list[str] = [
    '{"doubleValue": NaN}', '{"doubleValue": Infinity}', '{"doubleValue": -Infinity}', '{"doubleValue": "NaN"}',
    '{"doubleValue": "Infinity"}', '{"doubleValue": "-Infinity"}', '{"doubleValue": 1e400}',
    '{"intValue": 1e400}', '{"intValue": "99999999999999999999"}', '{"intValue": ' + "9" * 5000 + "}",
    '{"stringValue": "' + "9" * 5000 + '"}', '{"doubleValue": "' + "9" * 5000 + '"}', '{"intValue": NaN}',
    '{"intValue": -Infinity}', '{"stringValue": "a\\u0000b"}', '{"stringValue": "\\ud800"}',
    '{"stringValue": "x\\udfff\\ud83d"}', '{"stringValue": "\\ud83d\\ude00"}', '{"stringValue": ' + '"z' * 1 + '"}',
    '{"stringValue": 12}', '{"stringValue": null}', '{"intValue": "abc"}', '{"intValue": true}',
    '{"boolValue": "yes"}', '{"bytesValue": "@@@"}', '{"bytesValue": "\\ud800"}', '{"arrayValue": 5}',
    '{"kvlistValue": {"values": [{"key": "\\ud800", "value": {"stringValue": "\\u0000"}}]}}', "null", "[]", '"x"',
    '{"stringValue": "' + "é" * 3000 + '"}', '{"doubleValue": 1.5, "intValue": 3}',
]  # fmt: skip


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return '{"arrayValue": {"values": [' * depth + '{"intValue": "1"}' + "]}}" * depth
    if kind == "kvlist":
        return '{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + "{}" + "}]}}" * depth
    return "[" * depth + "]" * depth


def _hostile_json(rng: random.Random, now_ns: int) -> bytes:
    roll = rng.randrange(10)
    if roll == 0:  # deep nesting, in and around the OTLP structure
        depth = rng.choice([50, 99, 101, 500, 999, 1000, 1001, 5000, 20000])
        kind = rng.choice(["array", "kvlist", "raw"])
        if kind == "raw":
            return _deep(depth, kind).encode()
        value = _deep(depth, kind)
    else:
        key = rng.choice([*_KEYS, "x", "\\ud800", "a\\u0000"])
        value = rng.choice(_HOSTILE_VALUES)
        value = f'{{"key": "{key}", "value": {value}}}'
    attribute_json = value if value.startswith('{"key"') else f'{{"key": "deep", "value": {value}}}'
    span = _json_span(rng, now_ns, [])
    text = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span, _json_span(rng, now_ns, [])]}]}]})
    marker = '"attributes": ['
    at = text.index(marker) + len(marker)
    body = text[:at] + attribute_json + ", " + text[at:]
    if roll == 1:  # an OTLP field of the wrong type or value
        body = body.replace(
            rng.choice(['"startTimeUnixNano": "', '"traceId": "', '"name": "', '"spanId": "']),
            rng.choice(['"startTimeUnixNano": -', '"traceId": 7, "x": "', '"name": NaN, "x": "', '"spanId": "zz']),
            1,
        )
    if roll == 2:  # random byte mutations of the JSON text
        return _mutate(rng, body.encode("utf-8", "surrogatepass"))
    if roll == 3:  # raw UTF-8-encoded surrogates and invalid UTF-8
        return body.encode("utf-8", "surrogatepass").replace(b'"chat"', rng.choice([b'"\xed\xa0\x80"', b'"\xff"']), 1)
    return body.encode("utf-8", "surrogatepass")


# --- gzip variants -------------------------------------------------------------------------------------


def _gzip_variant(rng: random.Random, body: bytes) -> bytes:
    roll = rng.randrange(6)
    if roll == 0:  # concatenated members
        cut = rng.randrange(len(body) + 1)
        return gzip.compress(body[:cut]) + gzip.compress(body[cut:])
    if roll == 1:  # trailing garbage
        return gzip.compress(body) + rng.choice([b"\x00", b"garbage", rng.randbytes(rng.randrange(1, 40)), b"\x1f"])
    if roll == 2:  # truncated stream
        packed = gzip.compress(body)
        return packed[: rng.randrange(len(packed))]
    if roll == 3:  # corrupted stream
        return _mutate(rng, gzip.compress(body))
    if roll == 4:  # inflates past the body limit
        return gzip.compress(b"\x0a" * (2 << 20))
    return gzip.compress(body)


# --- the fuzz ------------------------------------------------------------------------------------------


def _http_bodies(rng: random.Random, now_ns: int, count: int) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    for _ in range(count):
        roll = rng.randrange(20)
        valid = _valid_request(rng, now_ns).SerializeToString()
        if roll < 7:
            yield "mutated protobuf", _mutate(rng, valid), PROTOBUF
        elif roll < 8:
            yield "random bytes", rng.randbytes(rng.randrange(200)), rng.choice([PROTOBUF, JSON])
        elif roll < 14:
            yield "hostile json", _hostile_json(rng, now_ns), JSON
        elif roll < 15:
            yield "mutated json (valid base)", _mutate(rng, _valid_json(valid)), JSON
        elif roll < 18:
            yield "gzip protobuf", _gzip_variant(rng, valid), {**PROTOBUF, **GZIP}
        else:
            yield "gzip json", _gzip_variant(rng, _hostile_json(rng, now_ns)), {**JSON, **GZIP}


def _valid_json(protobuf: bytes) -> bytes:
    """An OTLP/JSON body carrying the same export (hex ids as the spec asks)."""
    from google.protobuf import json_format

    data = json_format.MessageToDict(ExportTraceServiceRequest.FromString(protobuf))
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def _stored_calls(database_url: str, pg_schema: str) -> int:
    with psycopg.connect(database_url, options=f"-c search_path={pg_schema}") as conn:
        row = conn.execute("SELECT count(*) FROM llm_calls").fetchone()
    return int(row[0]) if row else 0


def test_no_body_gets_a_5xx_and_the_collector_keeps_storing(
    collector_process: tuple[str, str, Path], database_url: str, pg_schema: str
) -> None:
    url, target, log = collector_process
    rng = random.Random(SEED)
    now_ns = time.time_ns()
    answers: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    with httpx.Client(timeout=30) as client:
        for kind, body, headers in _http_bodies(rng, now_ns, 2500):
            try:
                r = client.post(url + "/v1/traces", content=body, headers=headers)
            except httpx.HTTPError as exc:  # the server dropped the connection: as bad as a 5xx
                failures.append(f"{kind} -> {exc!r} for {body[:120]!r}")
                continue
            answers[(kind, r.status_code)] += 1
            if r.status_code not in HTTP_ANSWERS:
                failures.append(f"{kind} -> {r.status_code} {r.text[:200]!r} for {body[:120]!r}")

    grpc_answers: Counter[str] = Counter()
    with grpc.insecure_channel(target) as channel:
        export: Callable[..., Any] = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for n in range(300):
            valid = _valid_request(rng, now_ns).SerializeToString()
            body = (rng.randbytes(rng.randrange(100)), valid, _mutate(rng, valid), _mutate(rng, valid))[n % 4]
            compression = grpc.Compression.Gzip if n % 3 == 0 else grpc.Compression.NoCompression
            try:
                export(body, timeout=30, compression=compression)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in GRPC_ANSWERS:
                    failures.append(f"gRPC -> {code} {exc.details()!r} for {body[:120]!r}")
            grpc_answers[code.name] += 1

    assert not failures, f"{len(failures)} bodies got a server error:\n" + "\n".join(failures[:20])
    # the fuzz reached every path: bodies were stored, refused as malformed and as oversized
    statuses = Counter(status for (_, status) in answers.elements())
    assert statuses[200] > 200 and statuses[400] > 500 and statuses[413] > 0, answers
    assert grpc_answers["OK"] > 20 and grpc_answers["INVALID_ARGUMENT"] > 20, grpc_answers

    before = _stored_calls(database_url, pg_schema)
    good = _valid_request(random.Random(1), time.time_ns())
    del good.resource_spans[0].scope_spans[0].spans[1:]
    del good.resource_spans[0].scope_spans[0].spans[0].attributes[len(CHAT) + 2 :]  # no odd attribute
    r = httpx.post(url + "/v1/traces", content=good.SerializeToString(), headers=PROTOBUF, timeout=30)
    assert r.status_code == 200
    assert _stored_calls(database_url, pg_schema) == before + 1
    assert httpx.get(url + "/readyz", timeout=10).status_code == 200
    assert "Traceback" not in log.read_text(errors="replace"), "the collector logged an unexpected exception"
