"""Capture what real peer instrumentations export into committed fixtures (tests/interop/fixtures/<peer>/<case>.json).

Run from the repository root with the project's virtualenv::

    .venv/bin/python tests/interop/capture.py                 # every peer
    .venv/bin/python tests/interop/capture.py openlit logfire # some peers

For each peer it builds a virtualenv under ``~/.cache/llmmeter-interop/<peer>`` (the peers pin conflicting
OpenTelemetry versions, so they never share one), installs the peer's real library and the provider SDKs it
instruments, and runs ``app.py`` in it once per case (provider x plain/stream) against the project's fake
provider with a known usage (``x-fake-usage``). The app exports OTLP/HTTP to a small capture server started
here; every body it posts to ``*/v1/traces`` is converted to OTLP JSON (the spec's mapping: hex ids, integer
enums) and written, with the fake provider's usage (the truth) and the installed versions, into the fixture.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import sys
import threading
import venv
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmmeter_collector.devtools.fakeprovider import FakeProvider

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = HERE / "fixtures"
CACHE = Path(os.environ.get("LLMMETER_INTEROP_CACHE", Path.home() / ".cache" / "llmmeter-interop"))
OTEL = ["opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"]
# openai and anthropic 2.x+ moved to httpx2; several peers still import httpx, which nothing then pulls in.
EXTRA = ["httpx"]

# What the fake provider answers, per provider (x-fake-usage, GenAI semantics: input INCLUDES cache read and
# write, output INCLUDES reasoning). Every class a price depends on is non-zero where the provider has it.
USAGE: dict[str, dict[str, int]] = {
    "openai": {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 120},
    "anthropic": {
        "input_tokens": 1500,
        "output_tokens": 300,
        "cached_tokens": 1000,
        "cache_creation_input_tokens": 200,
    },
    "gemini": {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 120},
}
MODELS = {"openai": "o4-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
SDKS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google-genai"}
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}


@dataclass(frozen=True)
class Peer:
    """One instrumentation (or a pair of them in one app) and the providers it traces."""

    name: str
    packages: tuple[str, ...]  # the peer's own distributions (their versions are recorded)
    providers: tuple[str, ...]
    pins: tuple[str, ...] = ()  # dependency pins the peer needs and does not declare
    anthropic_tracing: bool = False  # leave anthropic's own tracing on (it is on by default in anthropic >= 2)
    with_llmmeter: bool = False  # install this worktree's llmmeter too (pip install -e)
    calls_per_case: int = 1  # provider calls the app makes per case (always 1 today)


# openai-v2 2.4b0 imports opentelemetry.util.genai.instruments, gone from util-genai 1.2b0 on (no upper bound declared)
OPENAI_V2_UTIL = "opentelemetry-util-genai==1.1b0"
# peers instrumenting google-genai declare google-genai < 3 and, above it, skip instrumenting (a DependencyConflict)
GENAI_BELOW_3 = "google-genai<3"

PEERS: tuple[Peer, ...] = (
    Peer("otel-openai-v2", ("opentelemetry-instrumentation-openai-v2",), ("openai",), pins=(OPENAI_V2_UTIL,)),
    Peer("otel-google-genai", ("opentelemetry-instrumentation-google-genai",), ("gemini",), pins=(GENAI_BELOW_3,)),
    Peer("anthropic-sdk", (), ("anthropic",), anthropic_tracing=True),
    Peer(
        "openllmetry",
        (
            "opentelemetry-instrumentation-openai",
            "opentelemetry-instrumentation-anthropic",
            "opentelemetry-instrumentation-google-generativeai",
        ),
        ("openai", "anthropic", "gemini"),
    ),
    Peer("openlit", ("openlit",), ("openai", "anthropic", "gemini")),
    Peer(
        "openinference",
        (
            "openinference-instrumentation-openai",
            "openinference-instrumentation-anthropic",
            "openinference-instrumentation-google-genai",
        ),
        ("openai", "anthropic", "gemini"),
    ),
    Peer("langfuse", ("langfuse",), ("openai",)),
    Peer("logfire", ("logfire[google-genai]",), ("openai", "anthropic", "gemini"), pins=(GENAI_BELOW_3,)),
    Peer(
        "llmmeter-with-openai-v2",
        ("opentelemetry-instrumentation-openai-v2",),
        ("openai",),
        pins=(OPENAI_V2_UTIL,),
        with_llmmeter=True,
    ),
    Peer(
        "openinference-with-anthropic-sdk",
        ("openinference-instrumentation-anthropic",),
        ("anthropic",),
        anthropic_tracing=True,
    ),
    Peer(
        "openllmetry-with-anthropic-sdk",
        ("opentelemetry-instrumentation-anthropic",),
        ("anthropic",),
        anthropic_tracing=True,
    ),
)


class _Captured:
    """OTLP trace bodies posted to the capture server, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[tuple[str, str, bytes]] = []  # (path, content type, body)

    def take(self) -> list[tuple[str, str, bytes]]:
        with self.lock:
            out, self.bodies = self.bodies, []
        return out


def _capture_server(captured: _Captured) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding", "").lower() == "gzip":  # Langfuse's exporter compresses
                body = gzip.decompress(body)
            if self.path.endswith("/v1/traces"):
                with captured.lock:
                    captured.bodies.append((self.path, self.headers.get("content-type", ""), body))
            json_reply = "json" in self.headers.get("content-type", "")
            reply = b"{}" if json_reply else b""
            self.send_response(200)
            self.send_header("content-type", "application/json" if json_reply else "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:
            reply = b"{}"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _otlp_json(content_type: str, body: bytes) -> dict[str, Any]:
    """An export body as OTLP JSON (protobuf bodies converted with the spec's JSON mapping)."""
    if "json" in content_type:
        loaded: dict[str, Any] = json.loads(body)
        return loaded
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return otlp_dict(request)


def otlp_dict(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP JSON as the OTLP/HTTP spec maps it: lowerCamelCase, hex trace/span ids, integer enums."""
    data: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for item in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()
    return data


def _venv(peer: Peer) -> Path:
    """The peer's virtualenv, with its packages installed (pip skips what is already there)."""
    path = CACHE / peer.name
    python = path / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    sdks = sorted({SDKS[p] for p in peer.providers})
    packages = [*peer.packages, *peer.pins, *sdks, *OTEL, *EXTRA]
    if peer.with_llmmeter:
        packages += ["-e", str(ROOT)]
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], capture_output=True, text=True)
    if done.returncode != 0:
        errors = "\n".join(line for line in done.stderr.splitlines() if "is ignored" not in line)
        print(f"  {peer.name}: pip install failed:\n{errors[-3000:]}", file=sys.stderr)
        done.check_returncode()
    return path


def _versions(path: Path, peer: Peer) -> dict[str, str]:
    names = [p.split("[")[0] for p in peer.packages] + [re.split("[<>=!~]", p)[0] for p in peer.pins]
    names += [SDKS[p] for p in peer.providers] + OTEL
    names += ["opentelemetry-api", "opentelemetry-semantic-conventions"]
    if peer.with_llmmeter:
        names.append("llmmeter")
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(path / "bin" / "python"), "-c", script, *sorted(set(names))], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(done.stdout)
    versions["python"] = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return versions


def capture_peer(
    peer: Peer, fake: FakeProvider, captured: _Captured, otlp_url: str, only: str | None = None
) -> list[str]:
    """Run every case of one peer (or those of provider ``only``); returns the fixture files written."""
    path = _venv(peer)
    versions = _versions(path, peer)
    written = []
    for provider in peer.providers:
        if only and provider != only:
            continue
        for mode in ("plain", "stream"):
            case = f"{provider}-{mode}"
            captured.take()
            fake.reset()
            env = {
                **os.environ,
                "FAKE_URL": fake.url,
                "OTLP_URL": otlp_url,
                "FAKE_USAGE": json.dumps(USAGE[provider]),
                "MODEL": MODELS[provider],
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
            env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            if not peer.anthropic_tracing:  # the peer alone; its pairing with anthropic's tracing is a case of its own
                env["ANTHROPIC_OPEN_TELEMETRY"] = "false"
            done = subprocess.run(
                [str(path / "bin" / "python"), str(HERE / "app.py"), peer.name, provider, mode],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            if done.returncode != 0:
                print(f"  {peer.name} {case}: app failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                continue
            bodies = captured.take()
            if not bodies:
                print(f"  {peer.name} {case}: NOTHING exported (the peer did not trace the call)", file=sys.stderr)
                continue
            calls = [r for r in fake.requests if r.method == "POST"]
            fixture = {
                "peer": peer.name,
                "case": case,
                "versions": versions,
                "truth": {
                    "provider": PROVIDER_NAMES[provider],
                    "model": MODELS[provider],
                    "streaming": mode == "stream",
                    "provider_calls": len(calls),
                    "usage": USAGE[provider],
                },
                "exports": [{"path": p, "content_type": ct, "body": _otlp_json(ct, body)} for p, ct, body in bodies],
            }
            out = FIXTURES / peer.name / f"{case}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(fixture, indent=1, sort_keys=False) + "\n")
            spans = sum(
                len(ss.get("spans", []))
                for e in fixture["exports"]
                for rs in e["body"].get("resourceSpans", [])
                for ss in rs.get("scopeSpans", [])
            )
            print(f"  {peer.name} {case}: {len(bodies)} export(s), {spans} span(s), {len(calls)} provider call(s)")
            written.append(str(out.relative_to(ROOT)))
    return written


def main(args: list[str]) -> int:
    """``PEER`` or ``PEER:PROVIDER`` arguments select what to capture (nothing: everything)."""
    wanted = dict(arg.partition(":")[::2] for arg in args)
    names = list(wanted)
    unknown = set(names) - {p.name for p in PEERS}
    if unknown:
        print(f"unknown peer(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    captured = _Captured()
    server = _capture_server(captured)
    otlp_url = f"http://127.0.0.1:{server.server_address[1]}"
    failed = []
    with FakeProvider() as fake:
        for peer in PEERS:
            if names and peer.name not in names:
                continue
            print(f"{peer.name}:", flush=True)
            try:
                capture_peer(peer, fake, captured, otlp_url, wanted.get(peer.name) or None)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                print(f"  {peer.name}: failed: {exc}", file=sys.stderr)
                failed.append(peer.name)
    server.shutdown()
    if failed:
        print(f"failed peers: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
