"""Load the captured peer fixtures and replay them into a collector, as the peer's exporter sent them."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmmeter_collector.ingest import otlp_json

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DUPLICATE_MARK = "-with-"  # a fixture whose app ran two instrumentations of one SDK: "<a>-with-<b>"


@dataclass(frozen=True)
class Fixture:
    """One captured case: what the peer exported for one provider call, and what the provider answered."""

    peer: str
    case: str
    versions: dict[str, str]
    truth: dict[str, Any]
    exports: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.peer}/{self.case}"

    @property
    def provider_key(self) -> str:
        return self.case.split("-")[0]  # "openai", "anthropic", "gemini"

    def spans(self) -> list[tuple[str, dict[str, Any]]]:
        """Every exported span with its instrumentation scope name."""
        return [
            (ss.get("scope", {}).get("name", ""), span)
            for export in self.exports
            for rs in export["body"].get("resourceSpans", [])
            for ss in rs.get("scopeSpans", [])
            for span in ss.get("spans", [])
        ]


def edited(fixture: Fixture, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Fixture:
    """The fixture with ``edit(attributes)`` applied to every span's attribute list (a variant of a real capture)."""
    exports = copy.deepcopy(fixture.exports)
    for export in exports:
        for rs in export["body"].get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    span["attributes"] = edit(span.get("attributes", []))
    return Fixture(fixture.peer, fixture.case, fixture.versions, fixture.truth, exports)


def load(duplicates: bool) -> list[Fixture]:
    """Every committed fixture: the duplicate-tracing cases, or all the others."""
    out = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        data = json.loads(path.read_text())
        if (DUPLICATE_MARK in data["peer"]) == duplicates:
            out.append(Fixture(data["peer"], data["case"], data["versions"], data["truth"], data["exports"]))
    return out


def _rebased(body: dict[str, Any], shift_ns: int) -> dict[str, Any]:
    """The export with every span moved by ``shift_ns`` (captured days ago; replayed as just now)."""
    moved = copy.deepcopy(body)
    for rs in moved.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("startTimeUnixNano", "endTimeUnixNano"):
                    if key in span:
                        span[key] = str(int(span[key]) + shift_ns)
    return moved


def bodies(fixture: Fixture, encoding: str) -> list[tuple[bytes, str]]:
    """The fixture's exports as request bodies (``json`` as captured, or ``protobuf``), moved to now."""
    first = min(int(span["startTimeUnixNano"]) for _, span in fixture.spans())
    shift = time.time_ns() - 5 * 10**9 - first
    out = []
    for export in fixture.exports:
        text = json.dumps(_rebased(export["body"], shift)).encode()
        if encoding == "json":
            out.append((text, "application/json"))
        else:
            request: ExportTraceServiceRequest = otlp_json.parse_traces(text)
            out.append((request.SerializeToString(), "application/x-protobuf"))
    return out


def replay(url: str, fixture: Fixture, encoding: str = "json") -> list[dict[str, Any]]:
    """Post every export of ``fixture`` to the collector at ``url``; returns each response's JSON (or {})."""
    answers = []
    for content, content_type in bodies(fixture, encoding):
        response = httpx.post(url + "/v1/traces", content=content, headers={"content-type": content_type})
        assert response.status_code == 200, response.text
        answers.append(response.json() if "json" in response.headers.get("content-type", "") else {})
    return answers
