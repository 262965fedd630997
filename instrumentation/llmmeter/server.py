"""``server.address`` and ``server.port`` of the endpoint a provider client talks to, parsed once per URL."""

from __future__ import annotations

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


_NONE: dict[str, Any] = {}


def resource_server(resource: Any) -> dict[str, Any]:
    """The server of an openai/anthropic resource (``client.chat.completions``, ``client.messages``...): its
    client's ``_base_url`` field (the ``base_url`` property of recent SDKs runs an import per read), else the
    public property. Shared: copy before changing it."""
    client = getattr(resource, "_client", None)
    url = getattr(client, "_base_url", None)
    if url is None:
        url = getattr(client, "base_url", None)
    return _NONE if url is None else server_attributes(url)
