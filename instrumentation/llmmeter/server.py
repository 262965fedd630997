"""``server.address`` and ``server.port`` of the endpoint a provider client talks to, parsed once per URL, and
each client's endpoint (provider name and server attributes) worked out once per client and base URL."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from llmmeter import semconv

_MAX_CACHED = 64  # clients are few; an app that builds one per request only refills the cache
_cache: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(url) -> (url, attributes); the url pins the id


def server_attributes(url: Any) -> dict[str, Any]:
    """The attributes for a base URL (an ``httpx.URL`` or a string); empty when it has no host.

    The returned dict is shared: copy it before changing it.
    """
    hit = _cache.get(id(url))
    if hit is not None and hit[0] is url:
        return hit[1]
    attrs: dict[str, Any] = {}
    parts = urlsplit(str(url))
    if parts.hostname:
        attrs[semconv.SERVER_ADDRESS] = parts.hostname
        attrs[semconv.SERVER_PORT] = parts.port or (443 if parts.scheme == "https" else 80)
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()
    _cache[id(url)] = (url, attrs)
    return attrs


Endpoint = tuple[str, Mapping[str, Any]]  # (gen_ai.provider.name, server.address/server.port), shared


class Endpoints:
    """Each client's ``Endpoint``, kept while the client lives and its base URL is the same object (an app
    that sets a new base URL gets a new endpoint). The client is held weakly: a cache must not keep an SDK
    client and its connection pool alive."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        # id(client) -> (weak reference to the client, its base URL, its endpoint). A hit is an entry whose URL
        # is the client's current one and whose reference gives the client back (the id was not reused).
        self._entries: dict[int, tuple[weakref.ref[Any], Any, Endpoint]] = {}

    def get(self, client: Any, url: Any) -> Endpoint | None:
        """``client``'s endpoint if cached for this base URL (the same object), else None."""
        entry = self._entries.get(id(client))
        if entry is not None and entry[1] is url and entry[0]() is client:
            return entry[2]
        return None

    def put(self, client: Any, url: Any, endpoint: Endpoint) -> Endpoint:
        entries = self._entries
        if len(entries) >= _MAX_CACHED:
            entries.clear()
        with contextlib.suppress(TypeError):  # not weakly referenceable (a stand-in client): not cached
            entries[id(client)] = (weakref.ref(client), url, endpoint)
        return endpoint


def base_url_endpoints(provider: Callable[[Any], str]) -> Callable[[Any], Endpoint]:
    """``endpoint(resource)`` for an openai/anthropic resource (``client.chat.completions``, ``client.messages``...):
    the server from its client's ``_base_url`` field (the ``base_url`` property of recent SDKs runs an import
    per read), else the public property; ``provider(client)`` names the provider. Cached per client."""
    endpoints = Endpoints()

    def endpoint(resource: Any) -> Endpoint:
        client = getattr(resource, "_client", None)
        url = getattr(client, "_base_url", None)
        cached = endpoints.get(client, url)
        if cached is not None:
            return cached
        if url is None:  # an SDK without the field: not cached, the property may return a new URL each time
            public = getattr(client, "base_url", None)
            return provider(client), {} if public is None else server_attributes(public)
        return endpoints.put(client, url, (provider(client), server_attributes(url)))

    return endpoint
