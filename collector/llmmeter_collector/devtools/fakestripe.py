"""A local stand-in for Stripe's meter events endpoint (``POST /v1/billing/meter_events``), for the tests of
``llmmeter export stripe``: the official ``stripe`` library is pointed at it.

It answers as Stripe does: form-encoded ``event_name``, ``payload[...]``, ``identifier``, ``timestamp``; a secret
key as the bearer (401 otherwise); 400 ``parameter_missing`` for a missing field; an identifier already received is
refused (Stripe enforces uniqueness within at least 24 hours) and not counted; a timestamp older than 35 days or
more than 5 minutes ahead is refused. ``events`` are the accepted ones.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


class FakeStripe:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_next = 0  # answer the next N requests with a 500 (the library retries)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                status, answer = fake._handle(self.path, self.headers.get("authorization", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fakestripe")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, path: str, authorization: str, body: str) -> tuple[int, dict[str, Any]]:
        def error(status: int, code: str, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
            detail = {"type": "invalid_request_error", "code": code, "message": message}
            return status, {"error": {**detail, **({"param": param} if param else {})}}

        with self._lock:
            self.requests += 1
            if self.fail_next:
                self.fail_next -= 1
                return 500, {"error": {"type": "api_error", "message": "Fake Stripe: injected error"}}
            if path != "/v1/billing/meter_events":
                return error(404, "resource_missing", f"Unrecognized request URL (POST: {path})")
            if not authorization.startswith("Bearer sk_"):
                return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
            form = dict(parse_qsl(body, keep_blank_values=True))
            payload = {k[len("payload[") : -1]: v for k, v in form.items() if k.startswith("payload[")}
            for name in ("event_name", "payload[stripe_customer_id]", "payload[value]"):
                if not form.get(name):
                    return error(400, "parameter_missing", f"Missing required param: {name}.", name)
            identifier = form.get("identifier") or f"auto_{len(self.events)}"
            if any(e["identifier"] == identifier for e in self.events):
                return error(400, "idempotency_error", f"An event with identifier {identifier} already exists.")
            timestamp = int(form.get("timestamp") or time.time())
            if timestamp < time.time() - 35 * 86400 or timestamp > time.time() + 300:
                return error(
                    400, "parameter_invalid_integer", "Timestamp must be within the past 35 days.", "timestamp"
                )
            event = {
                "object": "billing.meter_event", "event_name": form["event_name"], "identifier": identifier,
                "payload": payload, "timestamp": timestamp, "livemode": False, "created": int(time.time()),
            }  # fmt: skip
            self.events.append(event)
            return 200, event
