"""OIDC / JWT bearer tokens for the REST API, beside API keys.

With ``LLMMETER_OIDC_ISSUER`` and ``LLMMETER_OIDC_AUDIENCE`` set, a bearer token that is a JWT is checked with
PyJWT: its signature against the issuer's JWKS (found through the discovery document; the key set is cached for 5
minutes and fetched again for an unknown key id, so a rotated key is picked up and a key the issuer dropped stops
verifying), its expiry and not-before (with ``LEEWAY_SECONDS``), its audience and its issuer (an unknown key id
fetches the JWKS again at most every ``REFRESH_COOLDOWN_SECONDS``). The role and projects come from claims:

* role: ``LLMMETER_OIDC_ROLE_CLAIM`` (default ``llmmeter_role``), a string or a list (a groups claim); each value is
  mapped through ``LLMMETER_OIDC_ROLE_MAP`` (``"finops=admin,analysts=viewer"``) when set, else must be a role name;
  the highest role wins. No known role: 403.
* projects: ``LLMMETER_OIDC_PROJECTS_CLAIM`` (default ``llmmeter_projects``), a list or a comma-separated string;
  ``*`` means every project. A token without it gets 403: a missing claim never grants every project."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt

from llmmeter_collector.access.keys import ROLES, Principal

logger = logging.getLogger("llmmeter.collector")

LEEWAY_SECONDS = 30
# An unknown key id fetches the JWKS again (a rotated key), at most this often: garbage tokens cannot flood the issuer.
REFRESH_COOLDOWN_SECONDS = 30.0
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
_RANK = {"ingest": 0, "viewer": 1, "admin": 2}


class TokenRefused(Exception):
    """A token that is not accepted: ``status`` 401 (not valid) or 403 (valid, but no role or projects)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    discovery_url: str = ""
    role_claim: str = "llmmeter_role"
    projects_claim: str = "llmmeter_projects"
    role_map: str = ""  # "group=role,group=role"

    def roles(self) -> dict[str, str]:
        out = {}
        for pair in filter(None, (p.strip() for p in self.role_map.split(","))):
            name, _, role = pair.partition("=")
            if role.strip() not in ROLES:
                raise ValueError(f"LLMMETER_OIDC_ROLE_MAP: {role.strip()!r} is not a role ({', '.join(ROLES)})")
            out[name.strip()] = role.strip()
        return out


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class Verifier:
    """Checks tokens of one issuer; thread-safe; fetches the discovery document and JWKS lazily."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._role_map = settings.roles()
        self._lock = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None

    def _client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks is None:
                url = (
                    self.settings.discovery_url
                    or self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                try:
                    with urllib.request.urlopen(url, timeout=10) as response:
                        document = json.load(response)
                except (OSError, ValueError) as exc:
                    raise TokenRefused(401, f"cannot read the OIDC discovery document at {url}: {exc}") from None
                jwks_uri = document.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise TokenRefused(401, f"the OIDC discovery document at {url} has no jwks_uri")
                self._jwks = jwt.PyJWKClient(
                    jwks_uri, cache_keys=False, lifespan=300, timeout=10, cooldown_duration=REFRESH_COOLDOWN_SECONDS
                )
            return self._jwks

    def verify(self, token: str) -> Principal:
        """The principal a valid token stands for; TokenRefused (401/403) saying why otherwise."""
        try:
            key = self._client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientError as exc:
            raise TokenRefused(401, f"token signing key not found at the issuer: {exc}") from None
        except jwt.DecodeError as exc:
            raise TokenRefused(401, f"not a valid token: {exc}") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=ALGORITHMS, audience=self.settings.audience, issuer=self.settings.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]},
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise TokenRefused(401, "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(401, f"the token is not for this audience ({self.settings.audience})") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(401, f"the token is not from the configured issuer ({self.settings.issuer})") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused(401, f"the token is not valid: {exc}") from None
        return Principal(0, str(claims["sub"])[:200], self._role(claims), self._projects(claims))

    def _role(self, claims: dict[str, Any]) -> str:
        raw = claims.get(self.settings.role_claim)
        values = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
        roles = [self._role_map.get(v, "" if self._role_map else v) for v in values if isinstance(v, str)]
        known = [r for r in roles if r in _RANK]
        if not known:
            raise TokenRefused(403, f"the token's {self.settings.role_claim} claim names no llmmeter role: {raw!r}")
        return max(known, key=lambda r: _RANK[r])

    def _projects(self, claims: dict[str, Any]) -> tuple[str, ...]:
        raw = claims.get(self.settings.projects_claim)
        values = raw if isinstance(raw, list) else raw.split(",") if isinstance(raw, str) else None
        if values is None:
            raise TokenRefused(
                403, f'the token has no {self.settings.projects_claim} claim (use "*" for every project)'
            )
        projects = tuple(sorted({str(v).strip() for v in values if str(v).strip()}))
        if projects == ("*",):
            return ()
        if not projects or "*" in projects:
            raise TokenRefused(403, f'the token\'s {self.settings.projects_claim} claim is empty or mixes "*" in')
        return projects
