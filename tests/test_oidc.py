"""OIDC bearer tokens beside API keys, against a local issuer serving a real discovery document and JWKS and signing
real RS256 tokens: valid, expired, wrong audience, wrong issuer, a rotated key, unknown roles, project claims."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from llmmeter_collector.access import oidc
from llmmeter_collector.config import ConfigError, Settings
from llmmeter_collector.service import BackgroundCollector

AUDIENCE = "llmmeter-api"


class Issuer:
    """A local OIDC issuer: /.well-known/openid-configuration, /jwks, and tokens signed with its current key."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.jwks_requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_requests += 1
                    body = {"keys": [{**json.loads(RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "alg": "RS256",
                                      "use": "sig"} for kid, k in issuer.keys.items()]}  # fmt: skip
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.kid = ""
        self.rotate()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rotate(self) -> None:
        """A new signing key replaces the old one in the JWKS."""
        self.kid = f"key-{len(self.keys) + 1}"
        self.keys = {self.kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def token(self, *, kid: str | None = None, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "alice@example.com", "iat": now, "exp": now + 300,
                "llmmeter_role": "admin", "llmmeter_projects": "*", **claims}  # fmt: skip
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.keys[self.kid], algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.server.shutdown()


@pytest.fixture
def running(settings: Settings, issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundCollector]:
    monkeypatch.setattr(oidc, "REFRESH_COOLDOWN_SECONDS", 0.0)  # rotate within a test, not 30 s later
    configured = dataclasses.replace(settings, oidc_issuer=issuer.url, oidc_audience=AUDIENCE,
                                     oidc_role_map="")  # fmt: skip
    with BackgroundCollector(configured, grpc=False) as collector:
        yield collector


def _get(running: BackgroundCollector, token: str, path: str = "/api/v1/keys", **params: str) -> httpx.Response:
    return httpx.get(running.url + path, params=params, headers={"Authorization": f"Bearer {token}"})


def test_valid_tokens_are_accepted_and_bad_ones_refused_with_the_reason(running: BackgroundCollector,
                                                                        issuer: Issuer) -> None:  # fmt: skip
    assert _get(running, issuer.token()).status_code == 200
    assert httpx.get(running.url + "/api/v1/keys").status_code == 401  # OIDC on: never open, even without keys
    for token, status, reason in (
        (issuer.token(exp=int(time.time()) - 120), 401, "expired"),
        (issuer.token(aud="someone-else"), 401, "not for this audience"),
        (issuer.token(iss="https://evil.example.com"), 401, "not from the configured issuer"),
        (issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), 401, "not valid"),
        (issuer.token(llmmeter_role="superuser"), 403, "names no llmmeter role"),
        (issuer.token(llmmeter_projects=None), 403, "no llmmeter_projects claim"),
        (issuer.token(sub=None), 401, "not valid"),
    ):
        answer = _get(running, token)
        assert answer.status_code == status and reason in answer.json()["error"], (reason, answer.text)
        if status == 401:
            assert answer.headers["www-authenticate"] == "Bearer"


def test_a_rotated_key_is_fetched_and_the_old_one_refused(running: BackgroundCollector, issuer: Issuer) -> None:
    old = issuer.token()
    assert _get(running, old).status_code == 200
    issuer.rotate()
    fresh = issuer.token()
    assert _get(running, fresh).status_code == 200  # unknown kid: the JWKS is fetched again
    refused = _get(running, old)
    assert refused.status_code == 401 and "signing key not found" in refused.json()["error"]
    assert issuer.jwks_requests >= 2


def test_roles_and_projects_from_claims_and_keys_beside_tokens(running: BackgroundCollector, issuer: Issuer) -> None:
    viewer = issuer.token(llmmeter_role=["some-group", "viewer"], llmmeter_projects=["shop"], sub="bob")
    assert _get(running, viewer, "/api/v1/summary", project="shop").status_code == 200
    assert _get(running, viewer, "/api/v1/summary", project="labs").status_code == 403
    assert _get(running, viewer).status_code == 403  # a viewer cannot list keys, nor create one:
    assert httpx.post(running.url + "/api/v1/keys", json={"name": "x", "role": "viewer"},
                      headers={"Authorization": f"Bearer {viewer}"}).status_code == 403  # fmt: skip
    created = httpx.post(running.url + "/api/v1/keys", json={"name": "ci", "role": "viewer"},
                         headers={"Authorization": f"Bearer {issuer.token()}"})  # fmt: skip
    assert created.status_code == 201
    assert httpx.get(running.url + "/api/v1/keys", headers={"Authorization": f"Bearer {created.json()['key']}"}
                     ).status_code == 403  # fmt: skip
    entries = _get(running, issuer.token(), "/api/v1/audit").json()["entries"]
    assert {"user alice@example.com", "user bob"} <= {e["actor"] for e in entries}


def test_a_role_map_turns_groups_into_roles(settings: Settings, issuer: Issuer) -> None:
    mapped = dataclasses.replace(settings, oidc_issuer=issuer.url, oidc_audience=AUDIENCE,
                                 oidc_role_claim="groups", oidc_role_map="finops=admin,analysts=viewer")  # fmt: skip
    with BackgroundCollector(mapped, grpc=False) as running:
        assert _get(running, issuer.token(groups=["analysts", "finops"])).status_code == 200  # the highest: admin
        assert _get(running, issuer.token(groups=["analysts"])).status_code == 403
        assert _get(running, issuer.token(groups=["admin"])).status_code == 403  # names outside the map: no role
    with pytest.raises(ConfigError, match="set together"):
        Settings.from_env({"LLMMETER_OIDC_ISSUER": issuer.url})
